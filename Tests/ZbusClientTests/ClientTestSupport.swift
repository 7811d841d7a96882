import Foundation
import Logging
import NIOCore
import Testing
import Zbus
import ZbusTestSupport

/// Where a client test's node runs: the real `zbus` binary in a child process, or embedded in the test process.
enum NodeKind: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case process
    case embedded

    var testDescription: String { rawValue }
}

/// Settings that keep failing tests short.
func quickConfiguration() -> ClientConfiguration {
    var configuration = ClientConfiguration()
    configuration.connectTimeout = .seconds(5)
    configuration.requestTimeout = .seconds(5)
    configuration.heartbeatInterval = nil
    return configuration
}

/// A node file with the `mq` module.
func clientNodeFile(_ directory: URL) throws -> String {
    let path = directory.appendingPathComponent("node-\(UUID().uuidString).yaml")
    try "node:\n  log_level: warning\nmodules:\n  - module: mq\n".write(to: path, atomically: false, encoding: .utf8)
    return path.path
}

/// Starts the real binary with the `mq` module (on `directory` and `listen` to restart on the same store and port).
func startProcessNode(directory: URL? = nil, listen: String = "127.0.0.1:0") throws -> ZbusProcess {
    let directory = directory ?? ZbusProcess.makeTemporaryDirectory("zbus-client")
    return try ZbusProcess(arguments: ["--config", try clientNodeFile(directory)], directory: directory, listen: listen)
}

/// Starts an embedded node on an OS-chosen port with a fresh store.
func startEmbeddedNode() async throws -> (ZbusNode, URL) {
    let directory = ZbusProcess.makeTemporaryDirectory("zbus-embedded")
    let node = try await ZbusNode(store: directory.appendingPathComponent("store").path, logLevel: .warning).start()
    return (node, directory)
}

/// A running node of either kind, with a broker for it.
struct TestNode: Sendable {
    let kind: NodeKind
    let broker: any Broker
    /// The node's TCP port (the embedded node listens too).
    let port: Int
    let process: ZbusProcess?
    let embedded: ZbusNode?

    /// A raw 2016-style client on the node's port.
    func wire() throws -> WireClient { try WireClient(port: port) }

    /// A second broker of the same kind (for a separate producer or caller).
    func makeBroker(poolSize: Int = 2) throws -> any Broker {
        if let embedded { return embedded.broker(configuration: quickConfiguration(), poolSize: poolSize) }
        return try SingleBroker(address: "127.0.0.1:\(port)", configuration: quickConfiguration(), poolSize: poolSize)
    }
}

/// Runs `body` against a fresh node of `kind`, and always cleans up.
func withTestNode(_ kind: NodeKind, _ body: (TestNode) async throws -> Void) async throws {
    switch kind {
    case .process:
        let process = try startProcessNode()
        let broker = try SingleBroker(address: "127.0.0.1:\(process.port)", configuration: quickConfiguration())
        let node = TestNode(kind: kind, broker: broker, port: process.port, process: process, embedded: nil)
        do {
            try await body(node)
        } catch {
            await broker.close()
            process.cleanUp()
            throw error
        }
        await broker.close()
        process.cleanUp()
    case .embedded:
        let (embedded, directory) = try await startEmbeddedNode()
        let broker = embedded.broker(configuration: quickConfiguration())
        let node = TestNode(kind: kind, broker: broker, port: embedded.address!.port, process: nil, embedded: embedded)
        do {
            try await body(node)
        } catch {
            await broker.close()
            await embedded.stop()
            try? FileManager.default.removeItem(at: directory)
            throw error
        }
        await broker.close()
        await embedded.stop()
        try? FileManager.default.removeItem(at: directory)
    }
}

/// Runs blocking work (a raw socket read) on a thread of its own, so that it never holds one of the few cooperative
/// threads that the client's tasks need meanwhile.
func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread { continuation.resume(with: Result { try body() }) }
        thread.start()
    }
}

/// Lets a non-Sendable test object cross into `onOwnThread` (used by one thread at a time).
final class Unchecked<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

/// A message with a text body and headers.
func textMessage(_ body: String, _ headers: [(String, String)] = []) -> Message {
    Message(method: "POST", headers: Headers(headers), body: ByteBuffer(string: body))
}
