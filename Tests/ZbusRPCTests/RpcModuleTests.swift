import Foundation
import Testing
import Zbus
import ZbusTestSupport

/// The `rpc` module's own wiring: its dependency on `mq`, and how it reaches its node.
@Suite("RPC module", .serialized)
struct RpcModuleTests {
    @Test("MQ-RPC workers on this node's MQ consume in-process, not over a loopback socket, and the mq module starts first")
    func workersInProcess() async throws {
        // `rpc` is listed before `mq`: the dependency orders the start.
        let directory = ZbusProcess.makeTemporaryDirectory("zbus-rpc-module")
        defer { try? FileManager.default.removeItem(at: directory) }
        let node = try ZbusNode(yaml: """
            node: { name: rpc-module, listen: "127.0.0.1:0", store: "\(directory.appendingPathComponent("store").path)", log_level: warning }
            modules:
              - module: rpc
                services: [{ service: calc, mq: Calc, workers: 3 }]
              - module: mq
            """)
        #expect(node.node.moduleNames == ["mq", "rpc"])
        try await node.start()
        let port = try #require(node.address?.port)
        let broker = try SingleBroker(address: "127.0.0.1:\(port)", configuration: quickConfiguration(), poolSize: 1)
        try await waitForConsumers(broker: broker, mq: "Calc", count: 3)
        let rpc = RpcInvoker(broker: broker, mq: "Calc", module: "calc")
        #expect(try await rpc.call("plus", 2, 3, as: Int.self) == 5)
        let inProcess = node.node.sessions.all.filter { $0.remoteAddress == Node.inProcessRemoteAddress }
        #expect(inProcess.count >= 3, "the workers' sessions")
        await broker.close()
        await node.stop()
    }

    @Test("an MQ-RPC service on this node without the mq module: the error names the file, line, key and both remedies")
    func missingMQModule() throws {
        let yaml = "modules:\n  - module: rpc\n    services:\n      - { service: calc, mq: Calc }\n"
        #expect {
            _ = try PluginRegistry.standard.makeModules(for: NodeConfig.parse(yaml: yaml, file: "rpc.yaml"), logger: quietLogger)
        } throws: { error in
            "\(error)" == "rpc.yaml:4:30: modules[0].services[0].mq: this node has no `mq` module, which module 'rpc' needs to hold MQ 'Calc': "
                + "add `- module: mq`, or set `broker: HOST:PORT`"
        }
        // With a broker of its own, it needs no mq module.
        let remote = "modules:\n  - module: rpc\n    services:\n      - { service: calc, mq: Calc, broker: 127.0.0.1:1 }\n"
        #expect(try PluginRegistry.standard.makeModules(for: NodeConfig.parse(yaml: remote, file: "rpc.yaml"), logger: quietLogger).count == 1)
    }
}
