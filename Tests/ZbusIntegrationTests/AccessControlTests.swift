import Foundation
import Testing
import ZbusKernel
import ZbusTestSupport

/// Access control through the real binary: the `auth` section's permission matrix, the three attacks of issue 20 on a
/// node without `auth` (zbus 6.3 tokens only), 2016-style raw frames carrying tokens, and the start-up warning.
@Suite("Access control", .serialized, .blockingIO(.heavy))
struct AccessControlTests {
    /// The secrets of the matrix node's tokens (`writer` in a secret file, `reader` as a digest, `ops` inline).
    static let writerSecret = "w-SECRET-1f9a5c"
    static let readerSecret = "r-SECRET-77b2e0"
    static let opsSecret = "a-SECRET-c0de42"

    /// A node with an `auth` section, the `mq`, `tracker` and `monitor` modules, logging at debug level.
    static func startAuthNode(extraAuth: String = "") throws -> ZbusProcess {
        let directory = ZbusProcess.makeTemporaryDirectory()
        try writerSecret.appending("\n").write(to: directory.appendingPathComponent("writer.token"), atomically: false, encoding: .utf8)
        let yaml = """
            node:
              log_level: debug
            auth:
              tokens:
                - name: writer
                  secret_file: writer.token
                  produce: ["Q*", "Svc"]
                - name: reader
                  sha256: \(TokenDigest.hex(readerSecret))
                  consume: ["Q*", "Svc"]
                - name: ops
                  secret: \(opsSecret)
                  admin: ["*"]
                  tracker: true
            \(extraAuth)
            modules:
              - module: mq
              - module: tracker
              - module: monitor
            """
        let path = directory.appendingPathComponent("node.yaml")
        try yaml.write(to: path, atomically: false, encoding: .utf8)
        return try ZbusProcess(arguments: ["--config", path.path], directory: directory)
    }

    /// The callers of the matrix, in column order.
    enum Caller: String, CaseIterable {
        case none, wrong, produceOnly, consumeOnly, admin

        var token: String? {
            switch self {
            case .none: return nil
            case .wrong: return "not-a-token"
            case .produceOnly: return AccessControlTests.writerSecret
            case .consumeOnly: return AccessControlTests.readerSecret
            case .admin: return AccessControlTests.opsSecret
            }
        }
    }

    /// One row of the matrix: a request, and the status each caller (none, wrong, produce-only, consume-only, admin)
    /// gets; a 403 body must name `permission`.
    struct Row {
        let name: String
        let expected: [Int]
        let permission: String
        let send: (WireClient, String?) -> Void
    }

    static func headers(_ headers: [(String, String)], _ token: String?) -> [(String, String)] {
        token.map { headers + [("token", $0)] } ?? headers
    }

    @Test("every command × {no token, wrong token, produce-only, consume-only, admin} gets the expected status")
    func matrix() throws {
        let node = try Self.startAuthNode()
        defer { node.cleanUp() }
        // The admin sets up: MQ Q with messages to consume, one MQ per caller to remove.
        let setup = try node.connect()
        for name in ["Q", "Qr"] + Caller.allCases.map({ "Qdel-\($0.rawValue)" }) {
            setup.request(Self.headers([("cmd", "create_mq"), ("mq_name", name), ("mq_mode", "1")], Self.opsSecret))
            expectReply(try setup.receive(), status: 200)
        }
        for index in 0..<20 {
            setup.request(Self.headers([("cmd", "produce"), ("mq", "Q"), ("id", "seed\(index)")], Self.opsSecret), body: "m\(index)")
            expectReply(try setup.receive(), status: 200)
        }
        // A client that produced to Qr, whose session id the others have seen.
        let victim = try node.connect()
        victim.request(Self.headers([("cmd", "produce"), ("mq", "Qr")], Self.writerSecret), body: "call")
        expectReply(try victim.receive(), status: 200)
        setup.request(Self.headers([("cmd", "consume"), ("mq", "Qr")], Self.opsSecret))
        let victimId = try #require(try setup.receive().sender)
        let h = Self.headers
        let table: [Row] = [
            //                                     none  wrong  prod  cons  admin
            Row(name: "test", expected:           [200,  200,   200,  200,  200], permission: "") { c, t in
                c.request(h([("cmd", "test")], t)) },
            Row(name: "produce Q", expected:      [403,  403,   200,  403,  200], permission: "produce") { c, t in
                c.request(h([("cmd", "produce"), ("mq", "Q")], t), body: "x") },
            Row(name: "consume Q", expected:      [403,  403,   403,  200,  200], permission: "consume") { c, t in
                c.request(h([("cmd", "consume"), ("mq", "Q")], t)) },
            Row(name: "query_mq Q", expected:     [403,  403,   200,  200,  200], permission: "a permission") { c, t in
                c.request(h([("cmd", "query_mq"), ("mq", "Q")], t)) },
            Row(name: "create_mq", expected:      [403,  403,   403,  403,  200], permission: "admin") { c, t in
                c.request(h([("cmd", "create_mq"), ("mq_name", "Qnew-\(UUID().uuidString.prefix(8))"), ("mq_mode", "1")], t)) },
            Row(name: "add_key Q", expected:      [403,  403,   403,  403,  200], permission: "admin") { c, t in
                c.request(h([("cmd", "add_key"), ("mq", "Q"), ("key", "k1")], t)) },
            Row(name: "remove_key Q", expected:   [403,  403,   403,  403,  200], permission: "admin") { c, t in
                c.request(h([("cmd", "remove_key"), ("mq", "Q"), ("key", "k1")], t)) },
            Row(name: "tracker_info", expected:   [403,  403,   403,  403,  200], permission: "tracker") { c, t in
                c.request(h([("cmd", "tracker_info")], t)) },
            // 0: routed, so nothing comes back to the router (only the admin may route without having consumed).
            Row(name: "route to a seen sender", expected: [403, 403, 403, 403, 0], permission: "consume") { c, t in
                c.request(h([("cmd", "route"), ("recver", victimId), ("id", "r")], t)) },
            Row(name: "GET /metrics (Bearer)", expected: [403, 403, 200, 200, 200], permission: "a permission") { c, t in
                c.request(t.map { [("authorization", "Bearer \($0)")] } ?? [], uri: "/metrics") },
            Row(name: "GET / monitor page (?token=)", expected: [403, 403, 200, 200, 200], permission: "a permission") { c, t in
                c.request([], uri: t.map { "/?token=\($0)" } ?? "/") },
            Row(name: "GET monitor JSON", expected: [403, 403, 200, 200, 200], permission: "a permission") { c, t in
                c.request(h([], t), uri: "/monitor/api/overview") },
            Row(name: "GET /health", expected:    [200,  200,   200,  200,  200], permission: "") { c, t in
                c.request([], uri: "/health") },
        ]
        for row in table {
            for (caller, expected) in zip(Caller.allCases, row.expected) {
                let client = try node.connect()
                defer { client.close() }
                row.send(client, caller.token)
                guard expected != 0 else {
                    #expect(try client.receiveIfAny(timeout: 0.3) == nil, "\(row.name) as \(caller)")
                    continue
                }
                let reply = try client.receive()
                #expect(reply.status == expected, "\(row.name) as \(caller): \(reply.bodyString)")
                if expected == 403 {
                    #expect(reply.bodyString.contains(row.permission), "\(row.name) as \(caller): \(reply.bodyString)")
                    for secret in [Self.writerSecret, Self.readerSecret, Self.opsSecret] {
                        #expect(!reply.bodyString.contains(secret))
                    }
                }
            }
        }

        let routed = try victim.receive()
        #expect(routed.status == 200 && routed.id == "r", "the admin's route arrived")
        #expect(try victim.receiveIfAny(timeout: 0.2) == nil, "only the admin's route arrived")

        // remove_mq: one MQ per caller; only the admin removes its own.
        for (caller, expected) in zip(Caller.allCases, [403, 403, 403, 403, 200]) {
            let client = try node.connect()
            client.request(h([("cmd", "remove_mq"), ("mq_name", "Qdel-\(caller.rawValue)")], caller.token))
            let reply = try client.receive()
            #expect(reply.status == expected, "remove_mq as \(caller): \(reply.bodyString)")
            if expected == 403 { #expect(reply.bodyString.contains("admin")) }
            client.close()
        }

        // data: 200 for everyone, listing Q only to callers with a permission on it.
        for (caller, listsQ) in zip(Caller.allCases, [false, false, true, true, true]) {
            let client = try node.connect()
            client.request(h([("cmd", "data")], caller.token))
            let reply = try client.receive()
            #expect(reply.status == 200)
            let table = try #require(try jsonBody(reply)["mqTable"] as? [String: Any])
            #expect((table["Q"] != nil) == listsQ, "data as \(caller)")
            client.close()
        }

        // The node logs callers by token name, never a secret.
        #expect(node.waitForLog("token 'writer'"))
        for secret in [Self.writerSecret, Self.readerSecret, Self.opsSecret] {
            #expect(!node.stderr.contains(secret), "a secret reached the log")
        }
    }

    @Test("the three attacks of issue 20 fail on a node without auth: delete or poison a protected MQ, inject a route, read its counts")
    func attacks() throws {
        let node = try startMQNode(extra: "  - module: monitor\n")
        defer { node.cleanUp() }
        let owner = try node.connect()
        let attacker = try node.connect()
        owner.request([("cmd", "create_mq"), ("mq_name", "Vault"), ("mq_mode", "1"), ("access_token", "vault-token")])
        expectReply(try owner.receive(), status: 200)
        owner.request([("cmd", "produce"), ("mq", "Vault"), ("token", "vault-token")], body: "secret payload")
        expectReply(try owner.receive(), status: 200)

        // 1. Deleting it or poisoning its dedupe keys needs its token (the empty register_token no longer suffices).
        attacker.request([("cmd", "remove_mq"), ("mq_name", "Vault")])
        let removal = try attacker.receive()
        #expect(removal.status == 403)
        #expect(removal.bodyString.contains("access token"))
        attacker.request([("cmd", "add_key"), ("mq", "Vault"), ("key", "next-order")])
        #expect(try attacker.receive().status == 403)
        attacker.request([("cmd", "remove_key"), ("mq", "Vault")])
        #expect(try attacker.receive().status == 403)
        owner.request([("cmd", "query_mq"), ("mq", "Vault"), ("token", "vault-token")])
        let info = try jsonBody(try owner.receive())
        #expect(info["unconsumedMsgCount"] as? Int == 1, "the backlog survived")
        owner.request([("cmd", "add_key"), ("mq", "Vault"), ("key", "k"), ("token", "vault-token")])
        expectReply(try owner.receive(), status: 200, body: "1")

        // 3. Its counts and creator: not in data, query_mq, the monitor JSON or /metrics without its token.
        attacker.request([("cmd", "data")])
        let table = try #require(try jsonBody(try attacker.receive())["mqTable"] as? [String: Any])
        #expect(table["Vault"] == nil)
        attacker.request([("cmd", "query_mq"), ("mq", "Vault")])
        #expect(try attacker.receive().status == 403)
        attacker.request([], uri: "/monitor/api/overview")
        #expect(!(try attacker.receive().bodyString.contains("Vault")))
        attacker.request([], uri: "/monitor/api/mq?name=Vault")
        #expect(try attacker.receive().status == 404)
        attacker.request([], uri: "/metrics")
        #expect(!(try attacker.receive().bodyString.contains("Vault")))
        owner.request([], uri: "/monitor/api/overview?token=vault-token")
        #expect(try owner.receive().bodyString.contains("Vault"))

        // 2. A route into another client's connection needs a message of it consumed from an MQ it produced to.
        let victim = try node.connect()
        let service = try node.connect()
        for name in ["Svc", "Other"] {
            owner.request([("cmd", "create_mq"), ("mq_name", name), ("mq_mode", "1")])
            expectReply(try owner.receive(), status: 200)
        }
        victim.request([("cmd", "produce"), ("mq", "Svc"), ("id", "call-1"), ("ack", "0")], body: "request")
        service.request([("cmd", "consume"), ("mq", "Svc")])
        let call = try service.receive()
        let victimId = try #require(call.sender)
        // The attacker has seen the sender id; alone, or after consuming from another MQ, it cannot route to it.
        attacker.request([("cmd", "route"), ("recver", victimId), ("id", "call-1"), ("reply_code", "200")], body: "forged")
        let refused = try attacker.receive()
        #expect(refused.status == 403)
        #expect(refused.bodyString.contains("consume"))
        owner.request([("cmd", "produce"), ("mq", "Other")], body: "x")
        expectReply(try owner.receive(), status: 200)
        attacker.request([("cmd", "consume"), ("mq", "Other")])
        #expect(try attacker.receive().status == 200)
        attacker.request([("cmd", "route"), ("recver", victimId), ("id", "call-1")], body: "forged")
        #expect(try attacker.receive().status == 403)
        #expect(try victim.receiveIfAny(timeout: 0.3) == nil, "nothing forged reached the victim")
        // The service that consumed the call answers it.
        service.request([("cmd", "route"), ("recver", victimId), ("id", "call-1"), ("reply_code", "200")], body: "answer")
        expectReply(try victim.receive(), status: 200, body: "answer", headers: ["id": "call-1"])

        // The owner still removes it with its token.
        owner.request([("cmd", "remove_mq"), ("mq_name", "Vault"), ("token", "vault-token")])
        expectReply(try owner.receive(), status: 200)
    }

    @Test("a caller without a permission on a name cannot tell an existing MQ from a missing one, by any command or a URL-RPC call")
    func namesCannotBeProbed() throws {
        let node = try Self.startAuthNode()
        defer { node.cleanUp() }
        let setup = try node.connect()
        for (name, mode) in [("Hidden", "1"), ("HiddenRpc", "9")] {
            setup.request([("cmd", "create_mq"), ("mq_name", name), ("mq_mode", mode), ("token", Self.opsSecret)])
            expectReply(try setup.receive(), status: 200)
        }
        // `writer` may produce to Q* and Svc only; each probe goes once to the MQ and once to a name that is not one.
        let probe = try node.connect()
        let probes: [(String, (String) -> Void)] = [
            ("produce", { probe.request([("cmd", "produce"), ("mq", $0), ("token", Self.writerSecret)], body: "x") }),
            ("consume", { probe.request([("cmd", "consume"), ("mq", $0), ("token", Self.writerSecret)]) }),
            ("query_mq", { probe.request([("cmd", "query_mq"), ("mq", $0), ("token", Self.writerSecret)]) }),
            ("add_key", { probe.request([("cmd", "add_key"), ("mq", $0), ("key", "k"), ("token", Self.writerSecret)]) }),
            ("remove_key", { probe.request([("cmd", "remove_key"), ("mq", $0), ("key", "k"), ("token", Self.writerSecret)]) }),
            ("remove_mq", { probe.request([("cmd", "remove_mq"), ("mq_name", $0), ("token", Self.writerSecret)]) }),
            ("URL-RPC", { probe.request([("token", Self.writerSecret)], uri: "/\($0)/module/method") }),
            ("URL-RPC, no token", { probe.request([], uri: "/\($0)/module/method") }),
        ]
        for existing in ["Hidden", "HiddenRpc"] {
            let missing = existing.replacingOccurrences(of: "Hidden", with: "Nohere")
            for (what, send) in probes {
                send(existing)
                let there = try probe.receive()
                send(missing)
                let absent = try probe.receive()
                #expect(there.status == 403, "\(what) \(existing): \(there.status) \(there.bodyString)")
                #expect(absent.status == there.status, "\(what): \(absent.status) for a missing MQ, \(there.status) for \(existing)")
                #expect(absent.bodyString.replacingOccurrences(of: missing, with: existing) == there.bodyString,
                        "\(what): '\(absent.bodyString)' for a missing MQ, '\(there.bodyString)' for \(existing)")
            }
        }
    }

    @Test("a token given as ?token= in the URL is not stored with the message (nor passed on), and never logged")
    func urlTokenNotStored() throws {
        let node = try Self.startAuthNode()
        defer { node.cleanUp() }
        let client = try node.connect()
        client.request([("cmd", "create_mq"), ("mq_name", "Qurl"), ("mq_mode", "1"), ("token", Self.opsSecret)])
        expectReply(try client.receive(), status: 200)
        client.request([], body: "by url", uri: "/Qurl?cmd=produce&token=\(Self.writerSecret)&keep=1")
        expectReply(try client.receive(), status: 200)
        client.request([("cmd", "consume"), ("mq", "Qurl"), ("token", Self.readerSecret)])
        let delivered = try client.receive()
        expectReply(delivered, status: 200, body: "by url")
        #expect(!delivered.headers.pairs.contains { $0.value.contains(Self.writerSecret) })
        // The store holds the message as it was stored: without the producer's secret.
        let store = node.directory.appendingPathComponent("store")
        let files = FileManager.default.enumerator(at: store, includingPropertiesForKeys: nil)?.compactMap { $0 as? URL } ?? []
        let secret = Data(Self.writerSecret.utf8)
        var storedURL = false
        for file in files {
            guard let data = try? Data(contentsOf: file) else { continue }
            #expect(data.range(of: secret) == nil, "the producer's secret is in \(file.lastPathComponent)")
            // The rest of the request string is kept (so the scan above looked at the stored message).
            if data.range(of: Data("/Qurl?cmd=produce&keep=1".utf8)) != nil { storedURL = true }
        }
        #expect(storedURL, "the stored message keeps its request string without the token")
        #expect(!node.stderr.contains(Self.writerSecret), "no secret in the log")
    }

    @Test("a slave of a removed master does not copy an MQ created later under the master's name, live or after a restart")
    func slaveOfRemovedMaster() throws {
        let directory = ZbusProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        var node = try startMQNode(directory: directory)
        defer { node.stop() }
        // The attacker makes an unprotected MQ under the name the victim will use, a slave of it, and removes it.
        let attacker = try node.connect()
        attacker.request([("cmd", "create_mq"), ("mq_name", "Ledger"), ("mq_mode", "1")])
        expectReply(try attacker.receive(), status: 200)
        attacker.request([("cmd", "create_mq"), ("mq_name", "Tap"), ("mq_mode", "1"), ("master_mq", "Ledger")])
        expectReply(try attacker.receive(), status: 200)
        attacker.request([("cmd", "remove_mq"), ("mq_name", "Ledger")])
        expectReply(try attacker.receive(), status: 200)
        // The victim creates its protected MQ and writes to it.
        let victim = try node.connect()
        victim.request([("cmd", "create_mq"), ("mq_name", "Ledger"), ("mq_mode", "1"), ("access_token", "ledger-token")])
        expectReply(try victim.receive(), status: 200)
        victim.request([("cmd", "produce"), ("mq", "Ledger"), ("token", "ledger-token")], body: "secret entry")
        expectReply(try victim.receive(), status: 200)
        attacker.request([("cmd", "query_mq"), ("mq", "Tap")])
        #expect(try jsonBody(try attacker.receive())["unconsumedMsgCount"] as? Int == 0, "no copy reached the slave")

        // After a restart on the same store, the stored link is not followed either.
        node.stop()
        node = try startMQNode(directory: directory)
        let again = try node.connect()
        again.request([("cmd", "produce"), ("mq", "Ledger"), ("token", "ledger-token")], body: "secret entry 2")
        expectReply(try again.receive(), status: 200)
        again.request([("cmd", "query_mq"), ("mq", "Tap")])
        #expect(try jsonBody(try again.receive())["unconsumedMsgCount"] as? Int == 0, "no copy reached the slave after a restart")
    }

    @Test("a stored MQ not opened yet is not opened for a caller with no permission on its name (guessing names spends no descriptors)")
    func unopenedStaysClosed() throws {
        let first = try Self.startAuthNode()
        let directory = first.directory
        defer { try? FileManager.default.removeItem(at: directory) }
        let ops = try first.connect()
        // Enough MQs that a node restarted under a small open-file limit leaves the last ones (by name) unopened.
        for name in (0..<12).map({ "Filler\($0)" }) + ["ZHidden"] {
            ops.request([("cmd", "create_mq"), ("mq_name", name), ("mq_mode", "1"), ("access_token", "hidden-token"), ("token", Self.opsSecret)])
            expectReply(try ops.receive(), status: 200)
        }
        #expect(first.stop() == 0)

        // Restarted on the same store: ZHidden is stored, not opened until someone may use it.
        let node = try ZbusProcess(arguments: ["--config", directory.appendingPathComponent("node.yaml").path], directory: directory,
                                   openFileLimit: 96)
        defer { node.cleanUp() }
        let client = try node.connect()
        let attempts: [[(String, String)]] = [
            [("cmd", "produce"), ("mq", "ZHidden"), ("token", Self.writerSecret)],
            [("cmd", "consume"), ("mq", "ZHidden")],
            [("cmd", "query_mq"), ("mq", "ZHidden"), ("token", "a guess")],
        ]
        for headers in attempts {
            client.request(headers)
            let reply = try client.receive()
            #expect(reply.status == 403 && reply.bodyString.contains("forbidden"), "\(headers): \(reply.status ?? 0) \(reply.bodyString)")
        }
        let hiddenDirectory = directory.appendingPathComponent("store").path
        func openHidden() -> [String] {
            let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(node.process.processIdentifier)/fd")) ?? []
            return fds.compactMap { try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(node.process.processIdentifier)/fd/\($0)") }
                .filter { $0.hasPrefix(hiddenDirectory) && $0.contains("ZHidden") }
        }
        // The store's start line says how many of its 13 MQs it opened.
        #expect(node.waitForLog("MQ store open"))
        let opened = node.stderr.split(separator: " ").first { $0.hasPrefix("opened=") }.flatMap { Int($0.dropFirst("opened=".count)) }
        #expect((opened ?? 13) < 13, "the restarted node left MQs unopened: \(node.stderr.suffix(1500))")
        #expect(openHidden().isEmpty, "files of ZHidden opened for callers with no permission: \(openHidden())")
        // Its access token gets past the check, as in 6.3 (then opened, or refused for want of descriptors).
        client.request([("cmd", "consume"), ("mq", "ZHidden"), ("token", "hidden-token"), ("timeout", "0")])
        let answer = try client.receive()
        #expect(answer.status == 204 || answer.status == 503, "\(answer.status ?? 0) \(answer.bodyString)")
    }

    @Test("pipelined requests with different tokens on one connection each get their own decision (the per-connection cache)")
    func pipelinedTokens() throws {
        let node = try Self.startAuthNode()
        defer { node.cleanUp() }
        let client = try node.connect()
        client.request([("cmd", "create_mq"), ("mq_name", "Qpipe"), ("mq_mode", "1"), ("token", Self.opsSecret)])
        expectReply(try client.receive(), status: 200)
        let tokens: [(String?, Int)] = [(Self.writerSecret, 200), (Self.readerSecret, 403), (nil, 403), ("", 403),
                                        (Self.writerSecret, 200), ("not-a-token", 403), (Self.writerSecret + " ", 200),
                                        (Self.writerSecret.uppercased(), 403), (Self.opsSecret, 200), (Self.readerSecret, 403)]
        var frames = ""
        for (index, (token, _)) in tokens.enumerated() {
            let tokenLine = token.map { "token: \($0)\r\n" } ?? ""
            frames += "POST / HTTP/1.1\r\ncmd: produce\r\nmq: Qpipe\r\nid: p\(index)\r\n\(tokenLine)content-length: 1\r\n\r\nx"
        }
        // The same, with the token in Authorization or the URL, and the header winning over both.
        frames += "POST /?token=\(Self.readerSecret) HTTP/1.1\r\ncmd: produce\r\nmq: Qpipe\r\nid: u1\r\nauthorization: Bearer \(Self.readerSecret)\r\ntoken: \(Self.writerSecret)\r\ncontent-length: 1\r\n\r\nx"
        frames += "POST /?token=\(Self.writerSecret) HTTP/1.1\r\ncmd: produce\r\nmq: Qpipe\r\nid: u2\r\ntoken: \(Self.readerSecret)\r\ncontent-length: 1\r\n\r\nx"
        frames += "POST / HTTP/1.1\r\ncmd: produce\r\nmq: Qpipe\r\nid: u3\r\nAUTHORIZATION: bearer \(Self.writerSecret)\r\ncontent-length: 1\r\n\r\nx"
        frames += "POST / HTTP/1.1\r\ncmd: produce\r\nmq: Qpipe\r\nid: u4\r\ntoken: \(Self.writerSecret)\r\ntoken: \(Self.readerSecret)\r\ncontent-length: 1\r\n\r\nx"
        #expect(client.send(frames))
        // Replies are matched by id (a refusal may overtake the acknowledgement of a stored message before it).
        var expected: [String: Int] = ["u1": 200, "u2": 403, "u3": 200, "u4": 403]
        for (index, (_, status)) in tokens.enumerated() { expected["p\(index)"] = status }
        var got: [String: Int] = [:]
        for _ in 0..<expected.count {
            let reply = try client.receive()
            got[reply.id ?? "?"] = reply.status
        }
        #expect(got == expected)
    }

    @Test("a remove_mq that arrives while a create_mq of the same name waits for the store does not delete the new protected MQ")
    func removeRacingCreate() throws {
        let node = try startMQNode()
        defer { node.cleanUp() }
        let owner = try node.connect()
        let attacker = try node.connect()
        var removed: [String] = []
        // The attacker's check runs on its connection's event loop, the create on the store's thread: a remove checked
        // while the create still waits there found no MQ (so no access token to ask for).
        for round in 0..<60 {
            let name = "Race\(round)"
            owner.request([("cmd", "create_mq"), ("mq_name", name), ("mq_mode", "1"), ("access_token", "owner-token")])
            for _ in 0..<3 { attacker.request([("cmd", "remove_mq"), ("mq_name", name)]) }
            expectReply(try owner.receive(), status: 200)
            for _ in 0..<3 {
                let status = try attacker.receive().status
                #expect(status == 403 || status == 404, "a remove without the token: \(status)")
            }
            owner.request([("cmd", "query_mq"), ("mq", name), ("token", "owner-token")])
            if try owner.receive().status != 200 { removed.append(name) }
        }
        #expect(removed.isEmpty, "protected MQs removed by a caller without their token: \(removed)")
    }

    @Test("2016-style raw frames with a token header produce, consume and make an MQ-RPC call under auth; an MQ's access_token still works")
    func rawClientsWithTokens() throws {
        let node = try Self.startAuthNode()
        defer { node.cleanUp() }
        let admin = try node.connect()
        for (name, token) in [("Svc", ""), ("Legacy", "legacy-token")] {
            admin.request([("cmd", "create_mq"), ("mq_name", name), ("mq_mode", "1"), ("access_token", token), ("token", Self.opsSecret)])
            expectReply(try admin.receive(), status: 200)
        }
        let caller = try node.connect()
        let service = try node.connect()
        // The 2016 frame: a request line, the zbus headers with `token`, a body.
        #expect(caller.send("POST / HTTP/1.1\r\ncmd: produce\r\nmq: Svc\r\nid: rpc-1\r\nack: 0\r\ntoken: \(Self.writerSecret)\r\ncontent-length: 13\r\n\r\n{\"method\":1}\n"))
        #expect(service.send("GET / HTTP/1.1\r\ncmd: consume\r\nmq: Svc\r\ntoken: \(Self.readerSecret)\r\n\r\n"))
        let request = try service.receive()
        #expect(request.status == 200)
        #expect(request.token == nil, "the producer's token is not handed to consumers")
        #expect(request.bodyString == "{\"method\":1}\n")
        let sender = try #require(request.sender)
        #expect(service.send("POST / HTTP/1.1\r\ncmd: route\r\nrecver: \(sender)\r\nid: rpc-1\r\nreply_code: 200\r\nack: 0\r\ntoken: \(Self.readerSecret)\r\ncontent-length: 4\r\n\r\nok\r\n"))
        expectReply(try caller.receive(), status: 200, body: "ok\r\n", headers: ["id": "rpc-1", "token": nil])

        // An MQ's own access_token keeps its 6.3 meaning: it produces and consumes that MQ without an auth token.
        let legacy = try node.connect()
        legacy.request([("cmd", "produce"), ("mq", "Legacy"), ("token", "legacy-token")], body: "old")
        expectReply(try legacy.receive(), status: 200)
        legacy.request([("cmd", "consume"), ("mq", "Legacy"), ("token", "legacy-token")])
        expectReply(try legacy.receive(), status: 200, body: "old")
        legacy.request([("cmd", "produce"), ("mq", "Svc"), ("token", "legacy-token")], body: "x")
        #expect(try legacy.receive().status == 403, "the access token opens its own MQ only")

        // A slave receives a copy of every message of its master: under auth, creating one needs the consume
        // permission on the master. Admin on `*` may; a slave created without it gets no master.
        let writerAdmin = try node.connect()
        writerAdmin.request([("cmd", "create_mq"), ("mq_name", "Copy"), ("mq_mode", "1"), ("master_mq", "Svc"), ("token", Self.opsSecret)])
        expectReply(try writerAdmin.receive(), status: 200)
        writerAdmin.request([("cmd", "query_mq"), ("mq", "Copy"), ("token", Self.opsSecret)])
        #expect(try jsonBody(try writerAdmin.receive())["masterMq"] as? String == "Svc")
    }

    @Test("the operator commands send ZBUS_TOKEN from the environment")
    func operatorToken() throws {
        let node = try Self.startAuthNode()
        defer { node.cleanUp() }
        let server = "127.0.0.1:\(node.port)"
        let refused = try CommandProcess(ZbusProcess.binaryPath, ["mq", "create", "Ops1", "--server", server]).finish(timeout: 30)
        #expect(refused.status == 1 && refused.stderr.contains("403"), "\(refused.stderr)")
        let created = try CommandProcess(ZbusProcess.binaryPath, ["mq", "create", "Ops1", "--server", server],
                                         environment: ["ZBUS_TOKEN": Self.opsSecret]).finish(timeout: 30)
        #expect(created.status == 0, "\(created.stderr)")
        let produced = try CommandProcess(ZbusProcess.binaryPath, ["produce", "Ops1", "hello", "--server", server],
                                          environment: ["ZBUS_TOKEN": Self.opsSecret]).finish(timeout: 30)
        #expect(produced.status == 0, "\(produced.stderr)")
    }

    @Test("anonymous permissions and metrics_open apply to requests without a token")
    func anonymousAndOpenMetrics() throws {
        let node = try Self.startAuthNode(extraAuth: "  metrics_open: true\n  anonymous: { consume: [\"Pub*\"], admin: [\"Mine*\"] }")
        defer { node.cleanUp() }
        let client = try node.connect()
        client.request([], uri: "/metrics")
        #expect(try client.receive().status == 200)
        client.request([("cmd", "create_mq"), ("mq_name", "Public"), ("mq_mode", "1"), ("token", Self.opsSecret)])
        expectReply(try client.receive(), status: 200)
        let anonymous = try node.connect()
        anonymous.request([("cmd", "query_mq"), ("mq", "Public")])
        #expect(try anonymous.receive().status == 200)
        anonymous.request([("cmd", "produce"), ("mq", "Pub2")], body: "x")
        #expect(try anonymous.receive().status == 404, "a missing MQ the caller has a permission on")
        anonymous.request([("cmd", "produce"), ("mq", "Nowhere")], body: "x")
        #expect(try anonymous.receive().status == 403, "a missing MQ the caller has no permission on: names cannot be probed")
        anonymous.request([("cmd", "produce"), ("mq", "Public")], body: "x")
        #expect(try anonymous.receive().status == 403)

        // Admin on Mine* creates Mine MQs, but a slave of an MQ it may not consume gets no master (it would read
        // every message of it); of one it may consume, it does.
        client.request([("cmd", "create_mq"), ("mq_name", "Private"), ("mq_mode", "1"), ("token", Self.opsSecret)])
        expectReply(try client.receive(), status: 200)
        for (slave, master, linked) in [("MineCopy", "Private", false), ("MinePub", "Public", true)] {
            anonymous.request([("cmd", "create_mq"), ("mq_name", slave), ("mq_mode", "1"), ("master_mq", master)])
            expectReply(try anonymous.receive(), status: 200)
            anonymous.request([("cmd", "query_mq"), ("mq", slave)])
            #expect((try jsonBody(try anonymous.receive())["masterMq"] as? String == master) == linked, "\(slave)")
        }
        anonymous.request([("cmd", "create_mq"), ("mq_name", "Elsewhere"), ("mq_mode", "1")])
        #expect(try anonymous.receive().status == 403)
    }

    @Test("a node beyond loopback without auth warns at start; on 127.0.0.1 it does not")
    func loudWithoutAuth() throws {
        let open = try ZbusProcess(arguments: ["--config", try mqNodeFile(ZbusProcess.makeTemporaryDirectory())], listen: "0.0.0.0:0")
        defer { open.cleanUp() }
        #expect(open.waitForLog("NO ACCESS CONTROL"))
        #expect(open.stderr.contains("docs/security.md"))
        let local = try startMQNode()
        defer { local.cleanUp() }
        #expect(local.waitForLog("node listening"))
        #expect(!local.stderr.contains("NO ACCESS CONTROL"))
    }
}
