import Foundation
import Logging
import NIOCore
import Testing
import Zbus
import ZbusTestSupport

/// Client settings that keep failing tests short.
func quickConfiguration() -> ClientConfiguration {
    var configuration = ClientConfiguration()
    configuration.connectTimeout = .seconds(5)
    configuration.requestTimeout = .seconds(5)
    configuration.heartbeatInterval = nil
    return configuration
}

/// A logger that only shows warnings and worse.
let quietLogger: Logger = {
    var logger = Logger(label: "zbus.rpc.test")
    logger.logLevel = .warning
    return logger
}()

/// Writes `yaml` to a node file in `directory`.
func writeNodeFile(_ yaml: String, in directory: URL) throws -> String {
    let path = directory.appendingPathComponent("node-\(UUID().uuidString).yaml")
    try yaml.write(to: path, atomically: false, encoding: .utf8)
    return path.path
}

/// Starts the real binary with `yaml` (port and store from the command line).
func startNode(_ yaml: String) throws -> ZbusProcess {
    let directory = ZbusProcess.makeTemporaryDirectory("zbus-rpc")
    return try ZbusProcess(arguments: ["--config", try writeNodeFile(yaml, in: directory)], directory: directory)
}

/// The direct RPC port a node logged for `service` (`direct RPC server listening ... direct=HOST:PORT`).
func directPort(of node: ZbusProcess, service: String = "calc") throws -> Int {
    for line in node.stderr.split(separator: "\n") where line.contains("direct RPC server listening") && line.contains("service=\(service)") {
        if let range = line.range(of: "direct=") {
            let address = line[range.upperBound...].prefix { !$0.isWhitespace }
            if let port = address.split(separator: ":").last.flatMap({ Int($0) }) { return port }
        }
    }
    throw RpcTestError("no direct RPC address for '\(service)' in the node's log:\n\(node.stderr)")
}

/// Polls `query_mq` until `mq` has at least `count` consumers; throws after `seconds`.
func waitForConsumers(port: Int, mq: String, count: Int, seconds: Double = 15) async throws {
    let broker = try SingleBroker(address: "127.0.0.1:\(port)", configuration: quickConfiguration(), poolSize: 1)
    defer { Task { await broker.close() } }
    try await waitForConsumers(broker: broker, mq: mq, count: count, seconds: seconds)
}

/// Polls `query_mq` through `broker` until `mq` has at least `count` consumers; throws after `seconds`. Polled: the node
/// announces no new consumer to anyone.
func waitForConsumers(broker: any Broker, mq: String, count: Int, seconds: Double = 15) async throws {
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    var last: MQInfo?
    while ContinuousClock.now < deadline {
        last = try? await MqAdmin(broker: broker).query(mq)
        if let last, last.consumerCount >= count { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    throw RpcTestError("MQ \(mq) never had \(count) consumers (last: \(String(describing: last)))")
}

/// A test failure with a message.
struct RpcTestError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Starts an embedded node (mq module only) with a fresh store.
func startEmbeddedNode(yaml extra: String = "", registry: PluginRegistry = .standard) async throws -> (ZbusNode, URL) {
    let directory = ZbusProcess.makeTemporaryDirectory("zbus-rpc-embedded")
    let yaml = """
        node:
          name: rpc-test
          listen: 127.0.0.1:0
          store: \(directory.appendingPathComponent("store").path)
          log_level: warning
        modules:
          - module: mq
        \(extra)
        """
    let node = try ZbusNode(yaml: yaml, registry: registry)
    try await node.start()
    return (node, directory)
}

/// Runs `body` with an embedded node, always stopping it and removing its store.
func withEmbeddedNode(yaml extra: String = "", registry: PluginRegistry = .standard, _ body: (ZbusNode) async throws -> Void) async throws {
    let (node, directory) = try await startEmbeddedNode(yaml: extra, registry: registry)
    do {
        try await body(node)
    } catch {
        await node.stop()
        try? FileManager.default.removeItem(at: directory)
        throw error
    }
    await node.stop()
    try? FileManager.default.removeItem(at: directory)
}

/// A message with `headers` and a text body.
func message(_ body: String?, _ headers: [(String, String)] = []) -> Message {
    Message(method: "POST", uri: "/", headers: Headers(headers), body: body.map { ByteBuffer(string: $0) })
}

/// Runs `curl` with a time limit.
func curl(_ arguments: [String]) throws -> String {
    let curl = "/usr/bin/curl"
    try #require(FileManager.default.isExecutableFile(atPath: curl), "curl is needed for this test (apt-get install curl)")
    return try runCommand(curl, ["-s", "-m", "10"] + arguments, timeout: 15).stdout
}
