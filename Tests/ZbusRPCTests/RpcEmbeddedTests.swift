import Foundation
import NIOCore
import NIOPosix
import Synchronization
import Testing
import Zbus
import ZbusTestSupport

/// MQ-RPC and direct RPC with the library's hosts and invokers, on a node embedded in the test process.
@Suite("RPC embedded", .serialized, .blockingIO)
struct RpcEmbeddedTests {
    @Test("MQ-RPC over an in-process broker: typed calls, errors, 100 concurrent calls, stop")
    func mqRpcInProcess() async throws {
        try await withEmbeddedNode { node in
            let broker = node.broker(configuration: quickConfiguration(), poolSize: 2)
            // start() returns once the node counts the workers; the default limit on that wait (5 s) is too short
            // for a loaded two-core machine running the whole suite.
            let service = MqRpcService(broker: broker, mq: "Calc", processor: CalcService.processor,
                                       configuration: .init(workers: 4, readyTimeout: .seconds(60)), logger: quietLogger)
            try await service.start()
            let info = try #require(try await MqAdmin(broker: broker).query("Calc"))
            #expect(info.mode == 9, "created as MQ|RPC")
            #expect(info.consumerCount >= 4)

            let rpc = RpcInvoker(MqInvoker(broker: broker, mq: "Calc"), module: "calc", timeout: .seconds(20))
            #expect(try await rpc.call("plus", 1, 2, as: Int.self) == 3)
            #expect(try await rpc.call("echo", "héllo \"you\"", as: String.self) == "héllo \"you\"")
            #expect(try await rpc.call("sleep", 10, as: Int.self) == 10)
            #expect(try await rpc.call("plus", 1, 2) == 3)

            await #expect {
                try await rpc.call("divide", 1, 0, as: Int.self)
            } throws: { error in
                guard case RpcError.remote(let module, let method, 500, let message, let trace) = error else { return false }
                return module == "calc" && method == "divide" && message == "cannot divide 1 by zero" && trace?.contains("CalcService.Failure") == true
            }
            await #expect {
                try await rpc.call("echo", "x", as: Int.self)
            } throws: { error in
                guard case RpcError.resultType(_, "echo", "Int", "\"x\"") = error else { return false }
                return true
            }

            let answers = try await withThrowingTaskGroup(of: (Int, Int).self) { group in
                for index in 0..<100 {
                    group.addTask { (index, try await rpc.call("plus", index, 1000, as: Int.self)) }
                }
                return try await group.reduce(into: [Int: Int]()) { $0[$1.0] = $1.1 }
            }
            #expect(answers.count == 100)
            #expect(answers.allSatisfy { $0.value == $0.key + 1000 })

            await service.stop()
            // The node notices the closed sessions a moment later; from then on calls fail fast.
            let admin = MqAdmin(broker: broker)
            #expect(try await eventually { try await admin.query("Calc")?.consumerCount == 0 })
            await #expect {
                try await rpc.call("plus", 1, 2, as: Int.self)
            } throws: { error in
                guard case RpcError.serviceUnavailable(_, _, _, 404, let reason) = error else { return false }
                return reason == "MQ(Calc) Service Down"
            }
            await broker.close()
        }
    }

    @Test("MQ-RPC over TCP (event-loop workers): a removed MQ is created again; stop answers the call in progress")
    func mqRpcOverTCP() async throws {
        try await withEmbeddedNode { node in
            let address = try #require(node.address)
            let broker = try SingleBroker(address: "\(address)", configuration: quickConfiguration(), poolSize: 2)
            // `calc`, plus a method that tells when a worker has started answering it: the node counting a request
            // in flight only means it was handed to a worker's connection, and a worker that is asked to stop
            // before it has read the request gives it back to the MQ instead of answering it.
            let answering = AnsweringFlag()
            var processor = CalcService.processor
            processor.module("probe") { probe in
                probe.method("hold") { (milliseconds: Int) async throws -> Int in
                    answering.set()
                    try await Task.sleep(for: .milliseconds(milliseconds))
                    return milliseconds
                }
            }
            let service = MqRpcService(broker: broker, mq: "Tcp", processor: processor,
                                       configuration: .init(workers: 2, pollTimeout: .seconds(2), readyTimeout: .seconds(60)), logger: quietLogger)
            try await service.start()
            let admin = MqAdmin(broker: broker)
            let rpc = RpcInvoker(broker: broker, mq: "Tcp", module: "calc", timeout: .seconds(20))
            #expect(try await rpc.call("plus", 1, 2, as: Int.self) == 3)
            #expect(try await rpc.call("sleep", 5, as: Int.self) == 5)

            // The MQ is removed under the workers: they create it again and carry on.
            #expect(try await admin.remove("Tcp"))
            #expect(try await eventually { try await admin.query("Tcp").map { $0.consumerCount >= 2 && $0.mode == 9 } ?? false })
            #expect(try await rpc.call("minus", 5, 2, as: Int.self) == 3)

            // Stopping while a call runs: the call is finished and answered, then acknowledged.
            let probe = RpcInvoker(broker: broker, mq: "Tcp", module: "probe", timeout: .seconds(20))
            let slow = Task { try await probe.call("hold", 300, as: Int.self) }
            #expect(await eventually { answering.isSet })
            #expect(try await admin.query("Tcp")?.inFlightMsgCount == 1)
            await service.stop()
            #expect(try await slow.value == 300)
            #expect(try await eventually { try await admin.query("Tcp").map { $0.consumerCount == 0 && $0.inFlightMsgCount == 0 } ?? false })
            await #expect {
                try await rpc.call("plus", 1, 2, as: Int.self)
            } throws: { error in
                guard case RpcError.serviceUnavailable(_, _, _, 404, "MQ(Tcp) Service Down") = error else { return false }
                return true
            }
            await broker.close()
        }
    }

    @Test("a call nobody answers in time fails with a timeout error naming the method and the MQ")
    func timeout() async throws {
        try await withEmbeddedNode { node in
            let broker = node.broker(configuration: quickConfiguration())
            let service = MqRpcService(broker: broker, mq: "Slow", processor: CalcService.processor,
                                       configuration: .init(workers: 1, readyTimeout: .seconds(60)), logger: quietLogger)
            try await service.start()
            let rpc = RpcInvoker(MqInvoker(broker: broker, mq: "Slow"), module: "calc", timeout: .milliseconds(300))
            await #expect {
                try await rpc.call("sleep", 1200, as: Int.self)
            } throws: { error in
                guard case RpcError.timedOut("calc", "sleep", let target, .milliseconds(300)) = error else { return false }
                let text = "\(error)"
                return target == "MQ 'Slow' at in-process:rpc-test" && text.contains("module(calc)-method(sleep) request timeout")
            }
            // A missing MQ is refused by the node at once.
            let nowhere = RpcInvoker(MqInvoker(broker: broker, mq: "Nowhere"), timeout: .seconds(5))
            await #expect {
                try await nowhere.call("plus", 1, 2)
            } throws: { error in
                guard case RpcError.serviceUnavailable(_, "plus", _, 404, "MQ(Nowhere) Not Found") = error else { return false }
                return true
            }
            await service.stop()
            await broker.close()
        }
    }

    @Test("direct RPC: MessageClient, pooled broker, 100 concurrent calls, URL calls, heartbeat, HTTP/1.0")
    func directRpc() async throws {
        let server = DirectRpcServer(processor: CalcService.processor, logger: quietLogger)
        let address = try await server.start()
        #expect(address.port != 0)
        let client = try MessageClient(address: "\(address)", configuration: quickConfiguration())
        let broker = try SingleBroker(address: "\(address)", configuration: quickConfiguration(), poolSize: 4)
        do {
            let single = RpcInvoker(client, module: "calc")
            #expect(try await single.call("minus", 5, 3, as: Int.self) == 2)
            #expect(try await single.call("sleep", 5, as: Int.self) == 5)
            let catalogue = try await single.catalogue()
            #expect(catalogue["calc"] != nil)

            let pooled = RpcInvoker(broker: broker, module: "calc")
            let answers = try await withThrowingTaskGroup(of: Bool.self) { group in
                for index in 0..<100 {
                    group.addTask {
                        index.isMultiple(of: 10)
                            ? try await pooled.call("sleep", 1, as: Int.self) == 1
                            : try await pooled.call("plus", index, index, index, as: Int.self) == 3 * index
                    }
                }
                return try await group.reduce(into: [Bool]()) { $0.append($1) }
            }
            #expect(answers.count == 100 && answers.allSatisfy { $0 })

            // Plain HTTP: heartbeat ignored, URL calls, HTTP/1.0 closes after the answer.
            let wire = try WireClient(port: address.port)
            wire.request([("cmd", "heartbeat"), ("id", "hb")])
            wire.send("GET /calc/echo?params=%22a%5C%22b%22 HTTP/1.1\r\nid: u1\r\n\r\n")
            let echoed = try wire.receive()
            #expect(echoed.id == "u1")
            #expect(echoed.bodyString == #"{"result":"a\"b","error":null,"stackTrace":null,"encoding":"UTF-8"}"#)
            wire.send("GET /plus?20,22 HTTP/1.0\r\n\r\n")
            let plus = try wire.receive()
            #expect(plus.bodyString.hasPrefix(#"{"result":42,"#))
            #expect(try wire.readUntilClose(timeout: 5).closed)
        } catch {
            await client.close()
            await broker.close()
            await server.stop()
            throw error
        }
        await client.close()
        await broker.close()
        await server.stop()
    }

    @Test("the same service with json, raw and a custom codec, switched by YAML alone", arguments: ["json", "raw", "line"])
    func codecFromYAML(codec: String) async throws {
        let yaml = """
              - module: line-codec
              - module: rpc
                codec: \(codec)
                services:
                  - { service: calc, mq: Calc, workers: 2 }
            """
        try await withEmbeddedNode(yaml: yaml, registry: PluginRegistry.standard.registering(LineCodecModule.self)) { node in
            let broker = node.broker(configuration: quickConfiguration())
            try await waitForConsumers(broker: broker, mq: "Calc", count: 2)
            // Requests without a content-type: only the codec the YAML names can read them.
            let producer = Producer(broker: broker, mq: "Calc")
            let json = try await producer.request(message(#"{"module":"calc","method":"echo","params":["hé \"q\""]}"#))
            let raw = try await producer.request(message(#"hé "q""#, [("method", "echo")]))
            let line = try await producer.request(message(#"calc.echo|"hé \"q\"""#))
            switch codec {
            case "json":
                #expect(json.status == 200 && json.bodyString == #"{"result":"hé \"q\"","error":null,"stackTrace":null,"encoding":"UTF-8"}"#)
                #expect(raw.status == 500 && line.status == 500)
            case "raw":
                #expect(raw.status == 200 && raw.bodyString == #"hé "q""#)
                // Without a `method` header the raw codec reads an empty method: the catalogue.
                #expect(json.status == 200 && json.bodyString.contains(#""name":"plus""#))
                #expect(line.status == 200 && line.bodyString.contains(#""name":"plus""#))
            default:
                #expect(line.status == 200 && line.bodyString == #"OK "hé \"q\"""#)
                #expect(json.status == 500 && raw.status == 500)
            }
            // And the invoker speaking that codec gets the same typed answer.
            let codecs: [String: any RpcCodec] = ["json": JsonRpcCodec(), "raw": RawRpcCodec(), "line": LineRpcCodec()]
            let speaking = try #require(codecs[codec])
            let rpc = RpcInvoker(MqInvoker(broker: broker, mq: "Calc"), module: "calc", codec: speaking)
            #expect(try await rpc.call("echo", "hé \"q\"", as: String.self) == "hé \"q\"")
            if codec != "raw" { #expect(try await rpc.call("plus", 2, 3, as: Int.self) == 5) }
            await broker.close()
        }
    }

    /// An embedding program's own services, hosted by the `rpc` module from YAML.
    enum TestServices: RpcServiceCatalog {
        static var services: [String: RpcProcessor] {
            var greeter = RpcProcessor()
            greeter.module("greeter") { $0.method("hello") { (name: String) in "hello, \(name)" } }
            return BuiltInRpcServices.services.merging(["greeter": greeter]) { _, mine in mine }
        }
    }

    @Test("an embedding program hosts its own services from YAML with RPCHostModule<Catalog>")
    func ownCatalog() async throws {
        let yaml = """
              - module: rpc
                services:
                  - { service: greeter, mq: Greeter, workers: 1 }
            """
        try await withEmbeddedNode(yaml: yaml, registry: PluginRegistry.standard.registering(RPCHostModule<TestServices>.self)) { node in
            let broker = node.broker(configuration: quickConfiguration())
            try await waitForConsumers(broker: broker, mq: "Greeter", count: 1)
            let rpc = RpcInvoker(broker: broker, mq: "Greeter", module: "greeter")
            #expect(try await rpc.call("hello", "Zoë", as: String.self) == "hello, Zoë")
            await broker.close()
        }
    }

    @Test("YAML mistakes are caught with the file, key and what is allowed")
    func yamlErrors() async throws {
        let cases: [(String, String)] = [
            ("    services:\n      - { service: nope, mq: Q }", "unknown service 'nope'; available: calc"),
            ("    services:\n      - { service: calc }", "hosted nowhere"),
            ("    services:\n      - { service: calc, mq: Q, workers: 0 }", "out of range"),
            ("    services:\n      - { service: calc, mq: Q, colour: red }", "unknown key; allowed: service, mq, broker"),
            ("    services: calc", "expected a list of services"),
        ]
        for (section, expected) in cases {
            let config = try NodeConfig.parse(yaml: "modules:\n  - module: mq\n  - module: rpc\n\(section)\n", file: "node.yaml")
            #expect {
                _ = try PluginRegistry.standard.makeModules(for: config, logger: quietLogger)
            } throws: { error in
                "\(error)".contains(expected) && "\(error)".hasPrefix("node.yaml:")
            }
        }
        // An MQ on a node without the mq module (and no broker) is refused.
        let noMQ = "modules:\n  - module: rpc\n    services:\n      - { service: calc, mq: Q }\n"
        #expect(throws: ConfigError.self) { try PluginRegistry.standard.makeModules(for: NodeConfig.parse(yaml: noMQ, file: "n.yaml"), logger: quietLogger) }
        // An unknown codec is only known at start, when every module has contributed its codecs.
        let directory = ZbusProcess.makeTemporaryDirectory("zbus-rpc-yaml")
        defer { try? FileManager.default.removeItem(at: directory) }
        let badCodec = try ZbusNode(yaml: """
            node: { listen: "127.0.0.1:0", store: "\(directory.path)", log_level: critical }
            modules:
              - module: rpc
                codec: jsno
                services: [{ service: calc, direct: "127.0.0.1:0" }]
            """)
        await #expect {
            try await badCodec.start()
        } throws: { error in
            "\(error)".contains("unknown codec 'jsno'; available: json, raw")
        }
        await badCodec.stop()
    }
}

/// Set once by a test RPC method when a worker starts answering it.
private final class AnsweringFlag: Sendable {
    private let state = Mutex(false)

    func set() { state.withLock { $0 = true } }

    var isSet: Bool { state.withLock { $0 } }
}
