import Foundation
import Logging
import Testing
import Zbus
import ZbusTestSupport

/// The `rpc` module's own wiring: its dependency on `mq`, and how it reaches its node.
@Suite("RPC module", .serialized, .blockingIO)
struct RpcModuleTests {
    /// A node named `name` on the store in `directory`, on a free port, with `modules` (the list under `modules:`).
    private static func node(_ name: String, in directory: URL, logLevel: String = "warning", modules: String,
                             logger: Logger? = nil) throws -> ZbusNode {
        try ZbusNode(yaml: """
            node: { name: \(name), listen: "127.0.0.1:0", store: "\(directory.appendingPathComponent("store").path)", log_level: \(logLevel) }
            modules:
            \(modules)
            """, logger: logger)
    }

    /// A client of the started `node`.
    private static func broker(of node: ZbusNode, poolSize: Int = 1) throws -> SingleBroker {
        try SingleBroker(address: "127.0.0.1:\(try #require(node.address?.port))", configuration: quickConfiguration(), poolSize: poolSize)
    }

    @Test("MQ-RPC workers on this node's MQ consume in-process, not over a loopback socket, and the mq module starts first")
    func workersInProcess() async throws {
        // `rpc` is listed before `mq`: the dependency orders the start.
        let directory = ZbusProcess.makeTemporaryDirectory("zbus-rpc-module")
        defer { try? FileManager.default.removeItem(at: directory) }
        let node = try Self.node("rpc-module", in: directory, modules: """
              - module: rpc
                services: [{ service: calc, mq: Calc, workers: 3 }]
              - module: mq
            """)
        #expect(node.node.moduleNames == ["mq", "rpc"])
        try await node.start()
        let broker = try Self.broker(of: node)
        try await waitForConsumers(broker: broker, mq: "Calc", count: 3)
        let rpc = RpcInvoker(broker: broker, mq: "Calc", module: "calc")
        #expect(try await rpc.call("plus", 2, 3, as: Int.self) == 5)
        let inProcess = node.node.sessions.all.filter { $0.remoteAddress == Node.inProcessRemoteAddress }
        #expect(inProcess.count >= 3, "the workers' sessions")
        await broker.close()
        await node.stop()
    }

    @Test("queue_timeout: requests that waited in the MQ for a worker past it are answered with an error at once, unrun")
    func queueTimeout() async throws {
        let directory = ZbusProcess.makeTemporaryDirectory("zbus-rpc-queue-timeout")
        defer { try? FileManager.default.removeItem(at: directory) }
        let node = try Self.node("rpc-queue-timeout", in: directory, logLevel: "error", modules: """
              - module: mq
              - module: monitor
              - module: rpc
                services: [{ service: calc, mq: Calc, workers: 1, queue_timeout: 1s }]
            """)
        try await node.start()
        let port = try #require(node.address?.port)
        let broker = try Self.broker(of: node, poolSize: 2)
        try await waitForConsumers(broker: broker, mq: "Calc", count: 1)
        let rpc = RpcInvoker(broker: broker, mq: "Calc", module: "calc")

        // Six calls of a 2.5 s method at once for one worker: it runs the first; the others wait in the MQ past the
        // 1 s limit (the first could too only if the idle worker took a second to be handed it). Run one after the
        // other, as before queue_timeout, they would take 15 s.
        let clock = ContinuousClock()
        let start = clock.now
        let outcomes = await withTaskGroup(of: Result<Int, any Error>.self) { group in
            for _ in 0..<6 {
                group.addTask {
                    do { return .success(try await rpc.call("sleep", 2500, as: Int.self, timeout: .seconds(30))) } catch { return .failure(error) }
                }
            }
            var all: [Result<Int, any Error>] = []
            for await outcome in group { all.append(outcome) }
            return all
        }
        let elapsed = clock.now - start
        let ran = outcomes.filter { if case .success(2500) = $0 { true } else { false } }
        let refused = outcomes.compactMap { outcome -> String? in
            if case .failure(let error) = outcome { "\(error)" } else { nil }
        }
        #expect(ran.count >= 1 && ran.count + refused.count == 6, "\(outcomes)")
        #expect(refused.count >= 4, "\(outcomes)")
        for text in refused {
            #expect(text.contains("MQ-RPC service 'calc' did not run this request") && text.contains("past the service's queue_timeout of 1000 ms"),
                    "\(text)")
        }
        #expect(elapsed < .seconds(7), "the refused calls are answered as soon as the worker is free: \(elapsed)")
        let metrics = try runCommand("/usr/bin/env", ["curl", "-s", "-m", "10", "http://127.0.0.1:\(port)/metrics"]).stdout
        #expect(metrics.contains("zbus_rpc_calls_total{outcome=\"expired\",service=\"calc\"} \(refused.count)\n")
                    || metrics.contains("zbus_rpc_calls_total{service=\"calc\",outcome=\"expired\"} \(refused.count)\n"),
                "\(metrics.split(separator: "\n").filter { $0.contains("zbus_rpc_calls_total") })")
        await broker.close()
        await node.stop()
    }

    @Test("queue_timeout on an MQ that already exists on disk: start-up warns that it cannot apply and names the remedy")
    func queueTimeoutDurableMQ() async throws {
        let directory = ZbusProcess.makeTemporaryDirectory("zbus-rpc-queue-timeout-disk")
        defer { try? FileManager.default.removeItem(at: directory) }
        // A first run makes the MQ durable (mode 1), as a zbus 6 setup or a plain consumer would.
        let first = try Self.node("rpc-disk", in: directory, logLevel: "error", modules: "  - module: mq")
        try await first.start()
        let firstBroker = try Self.broker(of: first)
        try await MqAdmin(broker: firstBroker).create("CalcDisk", mode: .mq)
        await firstBroker.close()
        await first.stop()

        let logs = CapturedLogs()
        let node = try Self.node("rpc-disk", in: directory, modules: """
              - module: mq
              - module: rpc
                services: [{ service: calc, mq: CalcDisk, workers: 1, queue_timeout: 1s }]
            """, logger: logs.logger())
        try await node.start()
        let warned = await eventually(within: 10) {
            !logs.lines(containing: "queue_timeout does not apply to this MQ").isEmpty
        }
        #expect(warned, "\(logs.problems.map(\.message))")
        let warning = logs.lines(containing: "queue_timeout does not apply to this MQ").first
        #expect(warning?.level == .warning && warning?.metadata["mq"] == "CalcDisk")
        #expect(warning?.message.contains("remove the MQ so that the service creates it in memory (mode 9), or remove queue_timeout") == true)
        await node.stop()
    }

    @Test("queue_timeout needs the service's MQ on this node: with `broker`, or without `mq`, start-up names the key and why")
    func queueTimeoutConfig() throws {
        for (line, message) in [
            ("{ service: calc, mq: Calc, broker: 127.0.0.1:1, queue_timeout: 1s }", "`queue_timeout` needs the MQ on this node"),
            ("{ service: calc, direct: 127.0.0.1:0, queue_timeout: 1s }", "`queue_timeout` limits how long an MQ-RPC request waits"),
            ("{ service: calc, mq: Calc, queue_timeout: soon }", "expected a duration"),
        ] {
            let yaml = "modules:\n  - module: mq\n  - module: rpc\n    services:\n      - \(line)\n"
            #expect {
                _ = try PluginRegistry.standard.makeModules(for: NodeConfig.parse(yaml: yaml, file: "rpc.yaml"), logger: quietLogger)
            } throws: { error in
                "\(error)".hasPrefix("rpc.yaml:5:") && "\(error)".contains("queue_timeout") && "\(error)".contains(message)
            }
        }
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
