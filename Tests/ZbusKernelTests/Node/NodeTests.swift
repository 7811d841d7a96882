import NIOCore
import Testing
import ZbusTestSupport
@testable import ZbusKernel

/// Starts an embedded node on an OS-chosen port with `yaml`, runs `body`, and always shuts the node down.
func withNode(_ yaml: String, registry: PluginRegistry = PluginRegistry().registering(HelloModule.self),
              _ body: (Node, Int) async throws -> Void) async throws {
    var config = try NodeConfig.parse(yaml: yaml, file: "test.yaml")
    config.listen = HostAndPort(host: "127.0.0.1", port: 0)
    config.logLevel = .warning
    let node = try Node(config: config, registry: registry)
    let address = try await node.start()
    do {
        try await body(node, address.port)
    } catch {
        await node.shutdown()
        throw error
    }
    await node.shutdown()
}

@Suite("Node", .blockingIO)
struct NodeTests {
    @Test("a module named in YAML answers its command; its config reached it")
    func helloModule() async throws {
        try await withNode("modules:\n  - module: hello\n    greeting: bonjour\n") { _, port in
            let client = try WireClient(port: port)
            client.request([("cmd", "hello"), ("id", "h1")])
            let reply = try client.receive()
            #expect(reply.status == 200)
            #expect(reply.bodyString == "bonjour")
            #expect(reply.id == "h1")
        }
    }

    @Test("a module not named in YAML is not loaded")
    func notLoaded() async throws {
        try await withNode("modules: []\n") { _, port in
            let client = try WireClient(port: port)
            client.request([("cmd", "hello"), ("id", "h2")])
            let reply = try client.receive()
            #expect(reply.status == 400)
            #expect(reply.bodyString == "Bad format: command(hello) not support")
        }
    }

    @Test("test, heartbeat, unknown and missing commands answer as zbus 6 does; ids are echoed")
    func builtIns() async throws {
        try await withNode("modules: []\n") { _, port in
            let client = try WireClient(port: port)
            client.request([("cmd", "bogus"), ("id", "x1")])
            client.request([("cmd", "heartbeat"), ("id", "x3")])
            client.request([("cmd", "test"), ("id", "x2")])
            client.request([("id", "x5")], uri: "/nothing")
            client.request([])
            let bogus = try client.receive()
            #expect(bogus.status == 400)
            #expect(bogus.bodyString == "Bad format: command(bogus) not support")
            #expect(bogus.id == "x1")
            let test = try client.receive()
            #expect(test.status == 200)
            #expect(test.bodyString == "OK")
            #expect(test.id == "x2", "heartbeat got no reply, so the next reply is test's")
            let missing = try client.receive()
            #expect(missing.bodyString == "Bad format: command(null) not support")
            #expect(missing.id == "x5")
            let noId = try client.receive()
            #expect(noId.id == nil)
        }
    }

    @Test("URL forms fill cmd and mq; headers win over the URL")
    func urlForms() async throws {
        try await withNode("modules:\n  - module: hello\n") { _, port in
            let client = try WireClient(port: port)
            client.send("GET /?cmd=test HTTP/1.1\r\n\r\n")
            #expect(try client.receive().bodyString == "OK")
            client.send("GET /Q?cmd=hello HTTP/1.1\r\nid: u2\r\n\r\n")
            let hello = try client.receive()
            #expect(hello.bodyString == "hello")
            #expect(hello.mq == "Q")
            client.send("GET /?cmd=bogus HTTP/1.1\r\ncmd: test\r\n\r\n")
            #expect(try client.receive().bodyString == "OK")
        }
    }

    @Test("replies come back in order for 1,000 pipelined requests on one connection")
    func pipelining() async throws {
        try await withNode("modules:\n  - module: hello\n") { _, port in
            let client = try WireClient(port: port)
            var batch = ""
            for index in 0..<1000 { batch += "GET / HTTP/1.1\r\ncmd: \(index % 2 == 0 ? "test" : "hello")\r\nid: \(index)\r\n\r\n" }
            client.send(batch)
            for index in 0..<1000 {
                let reply = try client.receive()
                #expect(reply.id == String(index))
            }
        }
    }

    @Test("HTTP/1.0 without keep-alive gets connection: close and the node closes")
    func http10Close() async throws {
        try await withNode("modules: []\n") { _, port in
            let client = try WireClient(port: port)
            client.send("GET /?cmd=test HTTP/1.0\r\n\r\n")
            let (bytes, closed) = try client.readUntilClose(timeout: 5)
            let text = String(decoding: bytes, as: UTF8.self)
            #expect(text.contains("connection: close\r\n"))
            #expect(text.hasSuffix("\r\n\r\nOK"))
            #expect(closed)
        }
    }

    @Test("sender, server and remote-addr are stamped by the node, overwriting the client's")
    func stamping() async throws {
        final class EchoModule: PluginModule {
            static let name = "echo"
            static let summary = "Echoes the stamped headers."
            init(setup: ModuleSetup) throws(ConfigError) {}
            func contribute(to contributions: inout ModuleContributions) {
                contributions.add(ClosureCommandHandler { request, session in
                    var reply = request.reply(status: 200, body: "\(request.sender ?? "")|\(request.server ?? "")|\(request.remoteAddr ?? "")")
                    reply.headers["session"] = session.id
                    session.send(reply)
                }, named: "echo", to: .commands)
            }
        }
        try await withNode("modules:\n  - module: echo\n", registry: PluginRegistry().registering(EchoModule.self)) { node, port in
            let client = try WireClient(port: port)
            client.request([("cmd", "echo"), ("sender", "forged"), ("server", "forged"), ("remote-addr", "forged")])
            let reply = try client.receive()
            let parts = reply.bodyString.split(separator: "|").map(String.init)
            #expect(parts.count == 3)
            #expect(parts[0] == reply.headers["session"])
            #expect(parts[0].count == 36)
            #expect(parts[1] == "127.0.0.1:\(port)")
            #expect(parts[2].hasPrefix("127.0.0.1:"))
            #expect(node.sessions.session(id: parts[0]) != nil)
        }
    }

    @Test("a framing error is answered with its 4xx and connection: close, and other connections carry on")
    func framingError() async throws {
        var yaml = "node:\n  limits: { max_header_bytes: 2KiB, max_body_bytes: 1KiB }\n"
        yaml += "modules: []\n"
        try await withNode(yaml) { _, port in
            let other = try WireClient(port: port)
            let bad = try WireClient(port: port)
            bad.send("POST / HTTP/1.1\r\ncmd: test\r\ncontent-length: 5000\r\n\r\n")
            let (bytes, closed) = try bad.readUntilClose(timeout: 5)
            let text = String(decoding: bytes, as: UTF8.self)
            #expect(text.hasPrefix("HTTP/1.1 413 Payload Too Large\r\n"))
            #expect(text.contains("connection: close"))
            #expect(closed)
            other.request([("cmd", "test")])
            #expect(try other.receive().bodyString == "OK")
        }
    }

    @Test("shutdown is idempotent and refuses restarts")
    func shutdownTwice() async throws {
        var config = NodeConfig()
        config.listen = HostAndPort(host: "127.0.0.1", port: 0)
        let node = try Node(config: config, registry: PluginRegistry())
        try await node.start()
        await node.shutdown()
        await node.shutdown()
        await #expect(throws: NodeError.self) { try await node.start() }
    }
}

@Suite("UrlRequest")
struct UrlRequestTests {
    @Test("query, path and bare params", arguments: [
        ("/?cmd=test", UrlRequestFields(cmd: "test")),
        ("/Q/?cmd=query_mq", UrlRequestFields(cmd: "query_mq", mq: "Q")),
        ("/Q?cmd=query_mq", UrlRequestFields(cmd: "query_mq", mq: "Q")),
        ("/RPCQ/echo/hello", UrlRequestFields(mq: "RPCQ", module: "echo", method: "hello")),
        ("/RPCQ/plus?1,2", UrlRequestFields(mq: "RPCQ", method: "plus", params: "1,2")),
        ("/?cmd=produce&mq=a%2Fb&params=%22x%20y%22", UrlRequestFields(cmd: "produce", mq: "a/b", params: "\"x y\"")),
        ("//Q//m", UrlRequestFields(mq: "Q", method: "m")),
    ])
    func parse(uri: String, expected: UrlRequestFields) {
        let url = UrlRequest(uri: uri)
        #expect(UrlRequestFields(cmd: url.cmd, mq: url.mq, module: url.module, method: url.method, params: url.params) == expected)
    }
}

struct UrlRequestFields: Equatable, Sendable {
    var cmd: String? = nil
    var mq: String? = nil
    var module: String? = nil
    var method: String? = nil
    var params: String? = nil
}
