import Foundation
import Testing
import Zbus
import ZbusTestSupport

/// MQ-RPC and direct RPC between real `zbus` processes, configured by YAML, called by the Swift invokers and by curl.
@Suite("RPC processes", .serialized, .blockingIO(.heavy))
struct RpcProcessTests {
    /// The shipped `config/rpc.yaml`, with its direct RPC port made 0 (tests never use fixed ports).
    static func shippedRpcNode() throws -> ZbusProcess {
        let shipped = try String(contentsOf: ZbusProcess.packageRoot.appendingPathComponent("config/rpc.yaml"), encoding: .utf8)
        let yaml = shipped.replacingOccurrences(of: "direct: 127.0.0.1:15557", with: "direct: 127.0.0.1:0")
        try #require(yaml != shipped, "config/rpc.yaml no longer has `direct: 127.0.0.1:15557`")
        return try startNode(yaml)
    }

    /// A node with only the `rpc` module, serving `calc` from the MQ `mq` of the broker at `port`.
    static func serviceNode(brokerPort: Int, mq: String = "Calc", workers: Int = 1) throws -> ZbusProcess {
        try startNode("""
            node:
              log_level: info
            modules:
              - module: rpc
                services:
                  - { service: calc, mq: \(mq), broker: "127.0.0.1:\(brokerPort)", workers: \(workers), poll_timeout: 2s }
            """)
    }

    @Test("config/rpc.yaml: 100 concurrent MQ-RPC calls and 100 concurrent direct calls, all answered correctly")
    func concurrentCalls() async throws {
        let node = try Self.shippedRpcNode()
        defer { node.cleanUp() }
        try await waitForConsumers(port: node.port, mq: "Calc", count: 8)
        let broker = try SingleBroker(address: "127.0.0.1:\(node.port)", configuration: quickConfiguration(), poolSize: 4)
        let direct = try SingleBroker(address: "127.0.0.1:\(try directPort(of: node))", configuration: quickConfiguration(), poolSize: 4)
        defer { Task { await broker.close(); await direct.close() } }

        for rpc in [RpcInvoker(broker: broker, mq: "Calc", module: "calc"), RpcInvoker(broker: direct, module: "calc")] {
            let results = try await withThrowingTaskGroup(of: (Int, Int).self) { group in
                for index in 0..<100 {
                    group.addTask {
                        let answer = index.isMultiple(of: 7)
                            ? try await rpc.call("sleep", index % 20, as: Int.self) + 1000 * index
                            : try await rpc.call("plus", index, 1000 * index, as: Int.self)
                        return (index, answer)
                    }
                }
                return try await group.reduce(into: [Int: Int]()) { $0[$1.0] = $1.1 }
            }
            #expect(results.count == 100, "\(rpc.invoker.target)")
            for (index, answer) in results {
                let expected = index.isMultiple(of: 7) ? index % 20 + 1000 * index : index + 1000 * index
                #expect(answer == expected, "call \(index) via \(rpc.invoker.target)")
            }
        }
    }

    @Test("curl calls the MQ-RPC service with headers, and direct RPC with a body and a URL")
    func curlCalls() async throws {
        let node = try Self.shippedRpcNode()
        defer { node.cleanUp() }
        try await waitForConsumers(port: node.port, mq: "Calc", count: 8)
        let byHeaders = try curl(["-H", "cmd: produce", "-H", "mq: Calc", "-H", "ack: 0", "-d", #"{"method":"plus","params":[1,2]}"#,
                                  "http://127.0.0.1:\(node.port)/"])
        #expect(byHeaders == #"{"result":3,"error":null,"stackTrace":null,"encoding":"UTF-8"}"#)
        let failed = try curl(["-i", "-H", "cmd: produce", "-H", "mq: Calc", "-H", "ack: 0", "-d", #"{"method":"divide","params":[1,0]}"#,
                               "http://127.0.0.1:\(node.port)/"])
        #expect(failed.hasPrefix("HTTP/1.1 500 "))
        #expect(failed.contains(#""error":{"message":"cannot divide 1 by zero"}"#))

        let port = try directPort(of: node)
        #expect(try curl(["-d", #"{"module":"calc","method":"echo","params":["hé \"q\""]}"#, "http://127.0.0.1:\(port)/"])
            == #"{"result":"hé \"q\"","error":null,"stackTrace":null,"encoding":"UTF-8"}"#)
        #expect(try curl(["http://127.0.0.1:\(port)/calc/plus?params=1,2"]).hasPrefix(#"{"result":3,"#))
        #expect(try curl(["http://127.0.0.1:\(port)/"]).contains(#""name":"minus""#), "GET / is the catalogue")
    }

    @Test("curl calls the MQ-RPC service by URL: GET /<mq>/<module>/<method>?params=..., JSON escaped")
    func curlUrlCalls() async throws {
        let node = try Self.shippedRpcNode()
        defer { node.cleanUp() }
        try await waitForConsumers(port: node.port, mq: "Calc", count: 8)
        #expect(try curl(["http://127.0.0.1:\(node.port)/Calc/calc/plus?params=1,2"]).hasPrefix(#"{"result":3,"#))
        #expect(try curl(["http://127.0.0.1:\(node.port)/Calc/plus?params=40,2"]).hasPrefix(#"{"result":42,"#))
        // A quote and a backslash in the argument (6.3.0 produced broken JSON here).
        #expect(try curl(["http://127.0.0.1:\(node.port)/Calc/calc/echo?params=%22a%5C%22b%5C%5Cc%22"])
            == #"{"result":"a\"b\\c","error":null,"stackTrace":null,"encoding":"UTF-8"}"#)
    }

    @Test("a worker killed mid-call: the call is redelivered to another worker and answered")
    func workerKilledRedelivers() async throws {
        let broker = try startNode("modules:\n  - module: mq\n")
        defer { broker.cleanUp() }
        let first = try Self.serviceNode(brokerPort: broker.port)
        defer { first.cleanUp() }
        try await waitForConsumers(port: broker.port, mq: "Calc", count: 1)

        let client = try SingleBroker(address: "127.0.0.1:\(broker.port)", configuration: quickConfiguration(), poolSize: 1)
        defer { Task { await client.close() } }
        let rpc = RpcInvoker(broker: client, mq: "Calc", module: "calc", timeout: .seconds(20))
        let call = Task { try await rpc.call("sleep", 1500, as: Int.self) }
        let admin = MqAdmin(broker: client)
        #expect(try await eventually { try await admin.query("Calc")?.inFlightMsgCount == 1 }, "the first worker took the call")

        let second = try Self.serviceNode(brokerPort: broker.port)
        defer { second.cleanUp() }
        try await waitForConsumers(port: broker.port, mq: "Calc", count: 2)
        first.crash()
        #expect(try await call.value == 1500, "answered by the second worker")
        #expect(second.isRunning)
    }

    @Test("a worker the node cannot park (429, max_parked_consumes) tries again after a pause instead of stopping for good, and calls are served")
    func parkedConsumeLimitRetried() async throws {
        let broker = try startNode("modules:\n  - module: mq\n    max_parked_consumes: 1\n")
        defer { broker.cleanUp() }
        let service = try Self.serviceNode(brokerPort: broker.port, workers: 2)
        defer { service.cleanUp() }
        // One worker parks; the other is refused with 429 and must come back each second, not stop.
        #expect(service.waitForLog("retrying in 1 s", within: 20), "\(service.stderr.suffix(2000))")
        #expect(!service.stderr.contains("worker stopped"), "\(service.stderr.suffix(2000))")
        let client = try SingleBroker(address: "127.0.0.1:\(broker.port)", configuration: quickConfiguration(), poolSize: 1)
        defer { Task { await client.close() } }
        let rpc = RpcInvoker(broker: client, mq: "Calc", module: "calc", timeout: .seconds(10))
        for index in 0..<5 {
            #expect(try await rpc.call("plus", index, 1, as: Int.self) == index + 1)
        }
        #expect(!service.stderr.contains("worker stopped"))
    }

    @Test("a worker killed mid-call with no other worker: the caller gets a timeout error, never a hang")
    func workerKilledTimesOut() async throws {
        let broker = try startNode("modules:\n  - module: mq\n")
        defer { broker.cleanUp() }
        let only = try Self.serviceNode(brokerPort: broker.port)
        defer { only.cleanUp() }
        try await waitForConsumers(port: broker.port, mq: "Calc", count: 1)

        let client = try SingleBroker(address: "127.0.0.1:\(broker.port)", configuration: quickConfiguration(), poolSize: 1)
        defer { Task { await client.close() } }
        let rpc = RpcInvoker(broker: client, mq: "Calc", module: "calc", timeout: .seconds(2))
        let call = Task { try await rpc.call("sleep", 5000, as: Int.self) }
        let admin = MqAdmin(broker: client)
        #expect(try await eventually { try await admin.query("Calc")?.inFlightMsgCount == 1 })
        only.crash()
        await #expect {
            try await call.value
        } throws: { error in
            guard case RpcError.timedOut("calc", "sleep", _, .seconds(2)) = error else { return false }
            return true
        }
        // With no consumer left the node refuses new calls at once.
        await #expect {
            try await rpc.call("plus", 1, 2, as: Int.self)
        } throws: { error in
            guard case RpcError.serviceUnavailable(_, _, _, 404, "MQ(Calc) Service Down") = error else { return false }
            return true
        }
    }

    @Test("codec: raw in YAML serves the same service with bodies passed through, over MQ-RPC and direct RPC")
    func rawCodecProcess() async throws {
        let node = try startNode("""
            modules:
              - module: mq
              - module: rpc
                codec: raw
                services:
                  - { service: calc, mq: Calc, workers: 2, direct: "127.0.0.1:0" }
            """)
        defer { node.cleanUp() }
        try await waitForConsumers(port: node.port, mq: "Calc", count: 2)
        #expect(try curl(["-H", "cmd: produce", "-H", "mq: Calc", "-H", "ack: 0", "-H", "method: echo", "-d", "plain text, \"as is\"",
                          "http://127.0.0.1:\(node.port)/"]) == "plain text, \"as is\"")
        let port = try directPort(of: node)
        #expect(try curl(["-H", "method: echo", "--data-binary", "line 1\nline 2", "http://127.0.0.1:\(port)/"]) == "line 1\nline 2")
        // A JSON request still reaches the same service: its content-type selects the json codec.
        #expect(try curl(["-H", "content-type: application/json", "-d", #"{"method":"plus","params":[2,3]}"#, "http://127.0.0.1:\(port)/"])
            .hasPrefix(#"{"result":5,"#))
    }

    @Test("the direct RPC port has the node's connection limits: 503 past max_connections_per_address, 408 for a trickled header block")
    func directPortIsGuarded() throws {
        let node = try startNode("""
            node:
              log_level: info
              limits:
                max_connections_per_address: 2
                header_timeout: 300ms
            modules:
              - module: rpc
                services:
                  - { service: calc, direct: "127.0.0.1:0" }
            """)
        defer { node.cleanUp() }
        let port = try directPort(of: node)
        let first = try WireClient(port: port)
        let second = try WireClient(port: port)
        first.request([("id", "1"), ("method", "plus")], body: #"{"method":"plus","params":[1,2]}"#, method: "POST")
        #expect(try first.receive().bodyString.contains("3"))
        second.send("POST / HTTP/1.1\r\ncontent-le")
        let refused = try WireClient(port: port).readUntilClose(timeout: 5)
        let refusal = String(decoding: refused.bytes, as: UTF8.self)
        #expect(refusal.hasPrefix("HTTP/1.1 503 ") && refusal.contains("node.limits.max_connections_per_address"), "\(refusal)")
        let slow = try second.readUntilClose(timeout: 5)
        let timeout = String(decoding: slow.bytes, as: UTF8.self)
        #expect(timeout.hasPrefix("HTTP/1.1 408 ") && timeout.contains("node.limits.header_timeout"), "\(timeout)")
        // The first connection is still served.
        first.request([("id", "2")], body: #"{"method":"plus","params":[2,2]}"#, method: "POST")
        #expect(try first.receive().bodyString.contains("4"))
    }
}
