import Foundation
import Logging
import NIOCore
import Testing
import Zbus
import ZbusClient
import ZbusExampleAdapter
import ZbusRPC
import ZbusTestSupport

/// Writes a node file into `directory`.
func nodeFile(_ directory: URL, _ yaml: String) throws -> String {
    let path = directory.appendingPathComponent("node-\(UUID().uuidString).yaml")
    try yaml.write(to: path, atomically: false, encoding: .utf8)
    return path.path
}

/// Starts the real binary with `yaml`.
func startNode(_ yaml: String) throws -> ZbusProcess {
    let directory = ZbusProcess.makeTemporaryDirectory("zbus-proxy")
    return try ZbusProcess(arguments: ["--config", try nodeFile(directory, yaml)], directory: directory)
}

/// The caller side: MQ-RPC through the bus (`MqInvoker`: produce with `ack: 0`, wait for the routed answer).
struct BusCaller {
    let broker: any Broker

    init(port: Int) throws {
        broker = try ZbusBroker.connect("127.0.0.1:\(port)")
    }

    /// Calls `mq` with `body` (and extra headers); waits until an adapter consumes the MQ (404 Service Down before).
    func call(_ mq: String, _ body: String, headers: [(String, String)] = [], method: String = "POST", uri: String = "/",
              timeout: Duration = .seconds(10)) async throws -> Message {
        let invoker = MqInvoker(broker: broker, mq: mq)
        let deadline = ContinuousClock.now + .seconds(20)
        while true {
            var request = Message(method: method, uri: uri, headers: Headers(headers))
            request.setBody(body)
            do {
                return try await invoker.invoke(request, timeout: timeout)
            } catch let error as RpcError {
                // The adapter's consumers connect shortly after the node starts, and nothing announces it to a
                // caller: the call itself is the probe, retried until the deadline.
                guard case .serviceUnavailable = error, ContinuousClock.now < deadline else { throw error }
                try await Task.sleep(for: .milliseconds(50))
            }
        }
    }
}

/// curl as a zbus client: produce with `ack: 0`, print the routed answer's status and body.
func curl(port: Int, mq: String, body: String, headers: [String] = []) throws -> (status: Int, body: String) {
    var arguments = ["-s", "-m", "20", "-H", "cmd: produce", "-H", "mq: \(mq)", "-H", "ack: 0", "--data-binary", body,
                     "-w", "\n%{http_code}"]
    for header in headers { arguments += ["-H", header] }
    arguments.append("http://127.0.0.1:\(port)/")
    let result = try runCommand("/usr/bin/curl", arguments)
    let text = result.stdout
    guard let newline = text.lastIndex(of: "\n") else { return (0, text) }
    return (Int(text[text.index(after: newline)...]) ?? 0, String(text[..<newline]))
}

@Suite("Proxy adapters", .serialized, .blockingIO(.heavy))
struct ProxyTests {
    @Test("http adapter: an MqInvoker caller and curl get the legacy service's answers, with method, path, headers and status mapped")
    func httpThroughTheBus() async throws {
        let legacy = try await LegacyServer.http()
        let node = try startNode("""
            modules:
              - module: mq
              - module: proxy
                adapters:
                  - { name: legacy-web, kind: http, mq: Web, target: "http://127.0.0.1:\(legacy.port)", workers: 2, timeout: 5s, max_in_flight: 8 }
                  - { name: legacy-api, kind: http, mq: Api, target: "http://127.0.0.1:\(legacy.port)/api" }
            """)
        defer { node.cleanUp() }
        let caller = try BusCaller(port: node.port)

        let plain = try await caller.call("Web", "hello", headers: [("x-test", "42")])
        #expect(plain.status == 200)
        #expect(plain.bodyString == "legacy POST / body=hello x-test=42")
        #expect(plain.headers["x-legacy"] == "yes")

        let mapped = try await caller.call("Web", "", headers: [("http-method", "put"), ("path", "/orders/7?x=1")])
        #expect(mapped.bodyString == "legacy PUT /orders/7?x=1 body= x-test=-")

        // The node delivers a consumed message with a status line (zbus 6), so method and path travel in headers;
        // without them: GET for an empty body, POST with one, path `/`.
        let defaults = try await caller.call("Web", "")
        #expect(defaults.bodyString == "legacy GET / body= x-test=-")

        let status = try await caller.call("Web", "", headers: [("path", "/status/418")])
        #expect(status.status == 418)
        #expect(status.bodyString.hasPrefix("legacy GET /status/418"))

        let based = try await caller.call("Api", "", headers: [("path", "/v1")])
        #expect(based.bodyString == "legacy GET /api/v1 body= x-test=-")

        // Several callers at once over the pooled connections.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<20 {
                group.addTask {
                    let reply = try await caller.call("Web", "n\(index)")
                    #expect(reply.bodyString == "legacy POST / body=n\(index) x-test=-")
                }
            }
            try await group.waitForAll()
        }

        let viaCurl = try curl(port: node.port, mq: "Web", body: "from-curl", headers: ["x-test: c", "path: /curl"])
        #expect(viaCurl.status == 200)
        #expect(viaCurl.body == "legacy POST /curl body=from-curl x-test=c")
        let curlStatus = try curl(port: node.port, mq: "Web", body: "", headers: ["path: /status/404", "http-method: GET"])
        #expect(curlStatus.status == 404)

        await caller.broker.close()
        await legacy.stop()
        #expect(node.stop() == 0)
    }

    @Test("tcp adapter: newline, length2, length4 and fixed-length framings, through MqInvoker and curl")
    func tcpFramings() async throws {
        var servers: [String: LegacyServer] = [:]
        for framing in ["newline", "length2", "length4", "fixed"] {
            servers[framing] = try await LegacyServer.framedEcho(framing, recordSize: 8)
        }
        let node = try startNode("""
            modules:
              - module: mq
              - module: proxy
                adapters:
                  - { kind: tcp, mq: Line, target: 127.0.0.1:\(servers["newline"]!.port), framing: newline }
                  - { kind: tcp, mq: Len2, target: 127.0.0.1:\(servers["length2"]!.port), framing: length2, workers: 2 }
                  - { kind: tcp, mq: Len4, target: 127.0.0.1:\(servers["length4"]!.port), framing: length4, max_record: 64KiB }
                  - { kind: tcp, mq: Fixed, target: 127.0.0.1:\(servers["fixed"]!.port), framing: fixed, record_size: 8 }
            """)
        defer { node.cleanUp() }
        let caller = try BusCaller(port: node.port)
        for mq in ["Line", "Len2", "Len4"] {
            for round in 0..<3 {  // the second and third calls reuse the pooled connection
                let reply = try await caller.call(mq, "rec-\(mq)-\(round)")
                #expect(reply.status == 200)
                #expect(reply.bodyString == "echo:rec-\(mq)-\(round)")
            }
        }
        let big = String(repeating: "x", count: 40_000)
        #expect(try await caller.call("Len4", big).bodyString == "echo:" + big)
        #expect(try await caller.call("Fixed", "abc").bodyString == "ABC     ")  // padded to 8 bytes
        #expect(try await caller.call("Fixed", "abcdefgh").bodyString == "ABCDEFGH")
        let tooLong = try await caller.call("Fixed", "abcdefghi")
        #expect(tooLong.status == 400)
        #expect(tooLong.bodyString.contains("longer than the fixed record size 8"))
        let newlineInside = try await caller.call("Line", "a\nb")
        #expect(newlineInside.status == 400)

        let viaCurl = try curl(port: node.port, mq: "Len2", body: "curl-record")
        #expect(viaCurl.status == 200)
        #expect(viaCurl.body == "echo:curl-record")

        await caller.broker.close()
        for server in servers.values { await server.stop() }
        #expect(node.stop() == 0)
    }

    @Test("service down, slow or answering garbage: a clear 502/504 within the timeout; the adapter recovers when the service comes back")
    func failuresAndRecovery() async throws {
        // A port that nothing listens on (yet): bind, note it, close.
        let probe = try await LegacyServer.http()
        let downPort = probe.port
        await probe.stop()
        let slow = try await LegacyServer.http()
        let garbageHTTP = try await LegacyServer.raw(Array("SSH-2.0-OpenSSH_9.6 this is not http\r\n\r\n".utf8))
        let garbageTCP = try await LegacyServer.raw([0xFF, 0xFF, 0xFF, 0xF0, 0x41, 0x42])
        let truncatedTCP = try await LegacyServer.raw([0x00, 0x10, 0x41])
        let node = try startNode("""
            modules:
              - module: mq
              - module: proxy
                adapters:
                  - { name: down-web, kind: http, mq: Down, target: "http://127.0.0.1:\(downPort)", timeout: 2s }
                  - { name: slow-web, kind: http, mq: Slow, target: "http://127.0.0.1:\(slow.port)", timeout: 1s }
                  - { name: junk-web, kind: http, mq: JunkWeb, target: "http://127.0.0.1:\(garbageHTTP.port)", timeout: 2s }
                  - { name: junk-tcp, kind: tcp, mq: JunkTcp, target: 127.0.0.1:\(garbageTCP.port), framing: length4, timeout: 2s }
                  - { name: cut-tcp, kind: tcp, mq: CutTcp, target: 127.0.0.1:\(truncatedTCP.port), framing: length2, timeout: 2s }
            """)
        defer { node.cleanUp() }
        let caller = try BusCaller(port: node.port)

        let down = try await caller.call("Down", "x")
        #expect(down.status == 502)
        #expect(down.bodyString.contains("legacy service 'down-web' at 127.0.0.1:\(downPort) is down"), "\(down.bodyString)")

        let timedOut = try await caller.call("Slow", "", headers: [("path", "/slow")])
        #expect(timedOut.status == 504)
        #expect(timedOut.bodyString.contains("'slow-web'") && timedOut.bodyString.contains("did not answer within 1 s"), "\(timedOut.bodyString)")
        let afterSlow = try await caller.call("Slow", "fine")
        #expect(afterSlow.status == 200)
        #expect(afterSlow.bodyString == "legacy POST / body=fine x-test=-")

        let junkWeb = try await caller.call("JunkWeb", "x")
        #expect(junkWeb.status == 502)
        #expect(junkWeb.bodyString.contains("'junk-web'") && junkWeb.bodyString.contains("answered garbage"), "\(junkWeb.bodyString)")

        let junkTcp = try await caller.call("JunkTcp", "x")
        #expect(junkTcp.status == 502)
        #expect(junkTcp.bodyString.contains("exceeds max_record"), "\(junkTcp.bodyString)")

        let cut = try await caller.call("CutTcp", "x")
        #expect(cut.status == 502)
        #expect(cut.bodyString.contains("'cut-tcp'") && cut.bodyString.contains("answered garbage"), "\(cut.bodyString)")

        let viaCurl = try curl(port: node.port, mq: "Down", body: "x")
        #expect(viaCurl.status == 502)
        #expect(viaCurl.body.contains("is down"))

        // The service comes back on its port: the next call reaches it, with no restart of anything.
        let revived = try await LegacyServer.http(port: downPort)
        let back = try await caller.call("Down", "again")
        #expect(back.status == 200)
        #expect(back.bodyString == "legacy POST / body=again x-test=-")
        // And goes away again: its pooled connection is dropped and the caller is told.
        await revived.stop()
        let gone = try await caller.call("Down", "x")
        #expect(gone.status == 502, "\(gone.bodyString)")

        await caller.broker.close()
        for server in [slow, garbageHTTP, garbageTCP, truncatedTCP] { await server.stop() }
        #expect(node.stop() == 0)
    }

    @Test("a service down under load: every caller gets its 502, and the node logs one warning for them all, not one per call")
    func downServiceLogsOnce() async throws {
        let node = try startNode("""
            modules:
              - module: mq
              - module: proxy
                adapters:
                  - { name: down-web, kind: http, mq: Down, target: "http://\(refusingAddress())", workers: 4, timeout: 2s }
            """)
        defer { node.cleanUp() }
        let caller = try BusCaller(port: node.port)
        let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
            for index in 0..<40 { group.addTask { try await caller.call("Down", "call \(index)").status ?? 0 } }
            return try await group.reduce(into: [Int]()) { $0.append($1) }
        }
        #expect(statuses == Array(repeating: 502, count: 40))
        // The node logs at info: the held-back failures are debug lines it does not write.
        let warnings = node.stderr.components(separatedBy: "legacy call failed").count - 1
        #expect(warnings == 1, "\(node.stderr)")
        #expect(node.stderr.contains("reason=service down"), "\(node.stderr)")
        await caller.broker.close()
        #expect(node.stop() == 0)
    }

    @Test("the example custom adapter (kv-line), registered by the program, is configured through YAML alone and works end to end")
    func exampleAdapterFromYAML() async throws {
        let kv = try await LegacyServer.kvLine()
        let directory = ZbusProcess.makeTemporaryDirectory("zbus-proxy-example")
        defer { try? FileManager.default.removeItem(at: directory) }
        // The example module is not in the standard registry: a program registers it like any module of its own.
        let node = try ZbusNode(yaml: """
            node: { listen: "127.0.0.1:0", store: "\(directory.appendingPathComponent("store").path)", log_level: warning }
            modules:
              - module: mq
              - module: example-adapter
              - module: proxy
                adapters:
                  - { name: cache, kind: kv-line, mq: Cache, target: 127.0.0.1:\(kv.port), timeout: 2s }
            """, registry: PluginRegistry.standard.registering(ExampleAdapterModule.self))
        try await node.start()
        let port = try #require(node.address?.port)
        let caller = try BusCaller(port: port)
        let missing = try await caller.call("Cache", "get user:1")
        #expect(missing.status == 404)
        #expect(missing.bodyString == "NOT_FOUND")
        let stored = try await caller.call("Cache", "set user:1 alice")
        #expect(stored.status == 200)
        #expect(stored.bodyString == "STORED")
        let value = try await caller.call("Cache", "get user:1")
        #expect(value.status == 200)
        #expect(value.bodyString == "alice")
        let bad = try await caller.call("Cache", "frobnicate")
        #expect(bad.status == 400)
        let viaCurl = try curl(port: port, mq: "Cache", body: "get user:1")
        #expect(viaCurl.status == 200)
        #expect(viaCurl.body == "alice")
        // The adapter's consumers reach their own node in-process (the test's callers come over TCP).
        #expect(node.node.sessions.all.contains { $0.remoteAddress == Node.inProcessRemoteAddress })
        await caller.broker.close()
        await node.stop()
        await kv.stop()
    }

    @Test("the zbus binary does not ship the example module: naming it is an unknown module")
    func exampleModuleNotShipped() throws {
        let directory = ZbusProcess.makeTemporaryDirectory("zbus-proxy")
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = try nodeFile(directory, "modules:\n  - module: mq\n  - module: example-adapter\n")
        let result = try runCommand(ZbusProcess.binaryPath, ["check-config", path])
        #expect(result.status == 2, "\(result.stderr)")
        #expect(result.stderr.contains("unknown module 'example-adapter'; registered: monitor, mq, proxy, rpc, tracker"), "\(result.stderr)")
    }

    @Test("a response header sent twice: set-cookie reaches the caller as separate lines, other names joined with ', ', through an adapter in the node and through a proxy node of its own")
    func repeatedResponseHeaders() async throws {
        let legacy = try await LegacyServer.raw(Array((
            "HTTP/1.1 200 OK\r\nSet-Cookie: session=abc; Path=/; HttpOnly\r\nX-Multi: one\r\n"
            + "Set-Cookie: theme=dark; Expires=Wed, 09 Jun 2027 10:18:14 GMT\r\nx-multi: two\r\nX-Single: only\r\n"
            + "Content-Length: 2\r\n\r\nok").utf8))
        let broker = try startNode("""
            modules:
              - module: mq
              - module: proxy
                adapters:
                  - { name: cookies, kind: http, mq: Cookies, target: "http://127.0.0.1:\(legacy.port)", workers: 1 }
                  - { name: cookies-tasks, kind: http, mq: CookiesTasks, target: "http://127.0.0.1:\(legacy.port)", workers: 2, max_in_flight: 1 }
            """)
        defer { broker.cleanUp() }
        let proxy = try startNode("""
            modules:
              - module: proxy
                broker: 127.0.0.1:\(broker.port)
                adapters:
                  - { name: remote-cookies, kind: http, mq: RemoteCookies, target: "http://127.0.0.1:\(legacy.port)", workers: 1 }
            """)
        defer { proxy.cleanUp() }
        let caller = try BusCaller(port: broker.port)
        for mq in ["Cookies", "CookiesTasks", "RemoteCookies"] {
            let reply = try await caller.call(mq, "")
            #expect(reply.status == 200 && reply.bodyString == "ok", "\(mq): \(reply.status ?? 0) \(reply.bodyString)")
            let cookies = reply.headers.pairs.filter { $0.name == "set-cookie" }.map(\.value)
            #expect(cookies == ["session=abc; Path=/; HttpOnly", "theme=dark; Expires=Wed, 09 Jun 2027 10:18:14 GMT"], "\(mq): \(reply.headers)")
            #expect(reply.headers["x-multi"] == "one, two", "\(mq): \(reply.headers)")
            #expect(reply.headers["x-single"] == "only")

            // An HTTP caller (curl) sees two set-cookie lines too.
            let dump = try runCommand("/usr/bin/curl", ["-s", "-m", "20", "-D", "-", "-o", "/dev/null", "-H", "cmd: produce", "-H", "mq: \(mq)",
                                                        "-H", "ack: 0", "http://127.0.0.1:\(broker.port)/"]).stdout
            let lines = dump.split(separator: "\r\n").map(String.init)
            #expect(lines.filter { $0.lowercased().hasPrefix("set-cookie:") }.count == 2, "\(mq): \(dump)")
            #expect(lines.contains { $0.lowercased() == "x-multi: one, two" }, "\(mq): \(dump)")
        }
        await caller.broker.close()
        #expect(proxy.stop() == 0)
        #expect(broker.stop() == 0)
        await legacy.stop()
    }

    @Test("a proxy node of its own serves an MQ of a remote broker")
    func proxyNodeOfItsOwn() async throws {
        let legacy = try await LegacyServer.http()
        let broker = try startNode("modules:\n  - module: mq\n")
        defer { broker.cleanUp() }
        let proxy = try startNode("""
            modules:
              - module: proxy
                broker: 127.0.0.1:\(broker.port)
                adapters:
                  - { name: remote-web, kind: http, mq: Remote, target: "http://127.0.0.1:\(legacy.port)", workers: 2 }
            """)
        defer { proxy.cleanUp() }
        let caller = try BusCaller(port: broker.port)
        let reply = try await caller.call("Remote", "far")
        #expect(reply.status == 200)
        #expect(reply.bodyString == "legacy POST / body=far x-test=-")
        let viaCurl = try curl(port: broker.port, mq: "Remote", body: "curl-far")
        #expect(viaCurl.body == "legacy POST / body=curl-far x-test=-")
        await caller.broker.close()
        #expect(proxy.stop() == 0)
        #expect(broker.stop() == 0)
        await legacy.stop()
    }
}

@Suite("Proxy configuration", .blockingIO(.heavy))
struct ProxyConfigTests {
    private func modules(_ yaml: String) throws(ConfigError) {
        let config = try NodeConfig.parse(yaml: yaml, file: "node.yaml")
        _ = try PluginRegistry.standard.makeModules(for: config, logger: Logger(label: "test"))
    }

    private func expectConfigError(_ yaml: String, containing parts: [String], sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            try modules(yaml)
            Issue.record("no error for:\n\(yaml)", sourceLocation: sourceLocation)
        } catch {
            for part in parts {
                #expect(error.description.contains(part), "\(error.description) lacks \(part)", sourceLocation: sourceLocation)
            }
        }
    }

    @Test("valid sections build without connecting anywhere")
    func valid() throws {
        try modules("""
            modules:
              - module: mq
              - module: proxy
                adapters:
                  - { kind: http, mq: A, target: "http://127.0.0.1:1" }
                  - { kind: tcp, mq: B, target: 127.0.0.1:1, framing: fixed, record_size: 16 }
                  - { kind: some-custom-kind, mq: C, anything: goes-to-start }
                  - { kind: http, mq: D, target: "http://127.0.0.1:1", pipeline: 8 }
                  - { kind: tcp, mq: E, target: 127.0.0.1:1, pipeline: 64 }
            """)
    }

    @Test("unknown keys, kinds' keys, framings and missing values stop start-up with file, line and key")
    func errors() {
        expectConfigError("""
            modules:
              - module: proxy
                brokr: 127.0.0.1:1
            """, containing: ["node.yaml:3", "brokr", "unknown key", "allowed: module, broker, broker_tls, adapters"])
        expectConfigError("""
            modules:
              - module: mq
              - module: proxy
                adapters:
                  - { kind: http, mq: A, target: "http://127.0.0.1:1", framing: newline }
            """, containing: ["node.yaml:5", "framing", "unknown key", "target"])
        expectConfigError("""
            modules:
              - module: mq
              - module: proxy
                adapters:
                  - { kind: tcp, mq: A, target: 127.0.0.1:1, framing: length3 }
            """, containing: ["node.yaml:5", "framing", "newline | length2 | length4 | fixed"])
        expectConfigError("""
            modules:
              - module: mq
              - module: proxy
                adapters:
                  - { kind: http, mq: A, target: "http://127.0.0.1:1", pipeline: 0 }
            """, containing: ["node.yaml:5", "pipeline", "1...64"])
        expectConfigError("""
            modules:
              - module: mq
              - module: proxy
                adapters:
                  - { kind: http, target: "http://127.0.0.1:1" }
            """, containing: ["node.yaml:5", "missing key 'mq'"])
        expectConfigError("""
            modules:
              - module: proxy
                adapters:
                  - { kind: http, mq: A, target: "http://127.0.0.1:1" }
            """, containing: ["no `mq` module", "broker: HOST:PORT"])
        expectConfigError("""
            modules:
              - module: mq
              - module: proxy
                adapters:
                  - { kind: http, mq: A, target: "https://example.com" }
            """, containing: ["node.yaml:5", "http:// URL"])
        expectConfigError("""
            modules:
              - module: mq
              - module: proxy
                adapters:
                  - { kind: my-custom-kind, target: 127.0.0.1:1, workers: many }
            """, containing: ["node.yaml:5", "missing key 'mq'"])
    }

    @Test("the shipped config/proxy.yaml and config/proxy-node.yaml start cleanly and stop with exit code 0")
    func shippedFilesStart() throws {
        // proxy-node.yaml's adapters consume the MQs of the broker it names (127.0.0.1:15555): here a fresh node, never
        // a developer's own node that may be running there. The legacy services' addresses become one where nothing
        // answers.
        let broker = try startNode("modules:\n  - module: mq\n")
        defer { broker.cleanUp() }
        let nowhere = refusingAddress()
        for file in ["proxy.yaml", "proxy-node.yaml"] {
            let shipped = try String(contentsOf: ZbusProcess.packageRoot.appendingPathComponent("config/\(file)"), encoding: .utf8)
            let yaml = shipped.split(separator: "\n", omittingEmptySubsequences: false).map { line in
                line.contains("broker:")
                    ? line.replacing(/127\.0\.0\.1:\d+/, with: "127.0.0.1:\(broker.port)")
                    : line.replacing(/127\.0\.0\.1:\d+/, with: nowhere)
            }.joined(separator: "\n")
            let node = try startNode(yaml)  // port 0 and a scratch store override the file's
            defer { node.cleanUp() }
            #expect(node.isRunning, "\(file)")
            if file == "proxy-node.yaml" {
                try broker.waitForMQ("Quotes", "the proxy node's consumers") { ($0["consumerCount"] as? Int ?? 0) > 0 }
            }
            #expect(node.stop() == 0, "\(file): \(node.stderr)")
        }
    }

    @Test("an adapter kind no loaded module contributes stops the node at start, naming the file, line and available kinds")
    func unknownKindAtStart() throws {
        let directory = ZbusProcess.makeTemporaryDirectory("zbus-proxy")
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = try nodeFile(directory, """
            modules:
              - module: mq
              - module: proxy
                adapters:
                  - { kind: kv-line, mq: Cache, target: \(refusingAddress()) }
            """)
        let result = try runCommand(ZbusProcess.binaryPath, ["--config", path, "--listen", "127.0.0.1:0", "--store", directory.appendingPathComponent("store").path])
        // The kernel reports any module start failure with exit code 1 (a ConfigError thrown in `start` is not told
        // apart yet); the message is the ConfigError's.
        #expect(result.status != 0, "\(result.stderr)")
        #expect(result.stderr.contains("node-"), "\(result.stderr)")
        #expect(result.stderr.contains("unknown adapter kind 'kv-line'"), "\(result.stderr)")
        #expect(result.stderr.contains("available: http, tcp"), "\(result.stderr)")
    }
}
