import Foundation
import Zbus
import Testing
import ZbusTestSupport

/// A node with the `mq` and `monitor` modules, and the requests the monitor tests make of it.
struct MonitoredNode {
    let process: ZbusProcess

    /// Starts a node loading `mq` and `monitor` (with `monitorKeys` in its section), then `moreModules` (YAML list
    /// items, indented as under `modules:`).
    init(monitorKeys: String = "", moreModules: String = "") throws {
        let directory = ZbusProcess.makeTemporaryDirectory("zbus-monitor")
        let config = directory.appendingPathComponent("node.yaml")
        try """
        node:
          name: monitored
        modules:
          - module: mq
          - module: monitor
        \(monitorKeys.isEmpty ? "" : "    " + monitorKeys)
        \(moreModules)
        """.write(to: config, atomically: true, encoding: .utf8)
        process = try ZbusProcess(arguments: ["--config", config.path], directory: directory)
    }

    /// Wraps a node started otherwise.
    init(process: ZbusProcess) {
        self.process = process
    }

    func cleanUp() { process.cleanUp() }

    /// Creates a plain MQ.
    func create(_ mq: String, on client: WireClient) throws {
        client.request([("cmd", "create_mq"), ("mq_name", mq), ("mq_mode", "1")])
        let reply = try client.receive()
        try #require(reply.status == 200, "create_mq \(mq): \(reply.status ?? 0) \(reply.bodyString)")
    }

    /// Produces `count` messages into `mq`, each acknowledged (so stored) before the next goes.
    func produce(_ count: Int, into mq: String, on client: WireClient) throws {
        for index in 0..<count {
            client.request([("cmd", "produce"), ("mq", mq)], body: "message \(index)")
            let reply = try client.receive()
            try #require(reply.status == 200, "produce into \(mq): \(reply.status ?? 0) \(reply.bodyString)")
        }
    }

    /// Consumes one message from `mq` (which acknowledges the one `client` held before).
    func consume(from mq: String, on client: WireClient) throws {
        client.request([("cmd", "consume"), ("mq", mq)])
        let reply = try client.receive(timeout: 10)
        try #require(reply.status == 200, "consume from \(mq): \(reply.status ?? 0) \(reply.bodyString)")
    }

    /// `GET path` on `client`'s connection.
    func get(_ path: String, on client: WireClient) throws -> Message {
        client.request([], uri: path)
        return try client.receive(timeout: 10)
    }
}
