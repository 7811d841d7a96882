import Foundation
import Testing
import ZbusTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// The `auth` section reloaded on SIGHUP through the real binary: a rotated token takes effect for new requests (on
/// new and open connections), and a bad section is logged with its file, line and key while the policy in use stays.
@Suite("Access control: reload on SIGHUP", .serialized, .blockingIO(.heavy))
struct AuthReloadTests {
    static let tokenA = "A-rotate-SECRET-31d7"
    static let tokenB = "B-rotate-SECRET-9e04"

    /// The node file: one token, `app`, read from `app.token`, that may produce to and administer `Q*`.
    static func nodeYaml(secretFile: String = "app.token") -> String {
        """
        node:
          log_level: info
        auth:
          tokens:
            - name: app
              secret_file: \(secretFile)
              admin: ["Q*"]
        modules:
          - module: mq
        """
    }

    /// The status a produce to `Q1` with `token` gets on `client`.
    static func produce(_ client: WireClient, token: String) throws -> Int {
        client.request([("cmd", "produce"), ("mq", "Q1"), ("token", token)], body: "m")
        return try client.receive(timeout: 10).status ?? 0
    }

    /// The status a produce with `token` gets on a new connection.
    static func produceFresh(_ node: ZbusProcess, token: String) throws -> Int {
        let client = try node.connect()
        defer { client.close() }
        return try produce(client, token: token)
    }

    @Test("token A → rotated to B + SIGHUP: A is refused and B accepted, on new and open connections; a broken auth section + SIGHUP is logged (file, line, key) and B still works")
    func rotateToken() throws {
        let directory = ZbusProcess.makeTemporaryDirectory("zbus-auth-reload")
        let secretFile = directory.appendingPathComponent("app.token")
        let nodeFile = directory.appendingPathComponent("node.yaml")
        try (Self.tokenA + "\n").write(to: secretFile, atomically: true, encoding: .utf8)
        try Self.nodeYaml().write(to: nodeFile, atomically: true, encoding: .utf8)
        let node = try ZbusProcess(arguments: ["--config", nodeFile.path], directory: directory)
        defer { node.cleanUp() }

        let open = try node.connect()
        defer { open.close() }
        open.request([("cmd", "create_mq"), ("mq_name", "Q1"), ("mq_mode", "1"), ("token", Self.tokenA)])
        #expect(try open.receive(timeout: 10).status == 200)
        #expect(try Self.produce(open, token: Self.tokenA) == 200)
        #expect(try Self.produceFresh(node, token: Self.tokenA) == 200)
        #expect(try Self.produceFresh(node, token: Self.tokenB) == 403)

        // Rotation: the secret file now holds B.
        try (Self.tokenB + "\n").write(to: secretFile, atomically: true, encoding: .utf8)
        kill(node.process.processIdentifier, SIGHUP)
        #expect(node.waitForLog("access policy reloaded"), "\(node.stderr)")
        #expect(try Self.produceFresh(node, token: Self.tokenA) == 403)
        #expect(try Self.produceFresh(node, token: Self.tokenB) == 200)
        // The open connection's cached decision lapsed with the reload.
        #expect(try Self.produce(open, token: Self.tokenA) == 403)
        #expect(try Self.produce(open, token: Self.tokenB) == 200)

        // A broken section (a secret file that is not there): logged with the file, line and key; B stays valid.
        try Self.nodeYaml(secretFile: "missing.token").write(to: nodeFile, atomically: true, encoding: .utf8)
        kill(node.process.processIdentifier, SIGHUP)
        #expect(node.waitForLog("auth reload failed"), "\(node.stderr)")
        let failure = try #require(node.stderr.split(separator: "\n").first { $0.contains("auth reload failed") })
        #expect(failure.contains("\(nodeFile.path):6:"), "the file and line: \(failure)")
        #expect(failure.contains("auth.tokens[0].secret_file"), "the key: \(failure)")
        #expect(failure.contains("missing.token"), "why: \(failure)")
        #expect(node.isRunning)
        #expect(try Self.produceFresh(node, token: Self.tokenB) == 200)
        #expect(try Self.produce(open, token: Self.tokenB) == 200)
        #expect(try Self.produceFresh(node, token: Self.tokenA) == 403)

        // The section removed: refused too (a node is never left without a policy).
        try "node:\n  log_level: info\nmodules:\n  - module: mq\n".write(to: nodeFile, atomically: true, encoding: .utf8)
        kill(node.process.processIdentifier, SIGHUP)
        #expect(node.waitForLog("auth reload failed", occurrences: 2), "\(node.stderr)")
        #expect(node.stderr.contains("removing access control takes a restart"))
        #expect(try Self.produceFresh(node, token: Self.tokenB) == 200)
        let anonymous = try node.connect()
        defer { anonymous.close() }
        anonymous.request([("cmd", "produce"), ("mq", "Q1")], body: "m")
        #expect(try anonymous.receive(timeout: 10).status == 403)
        #expect(node.isRunning)
        #expect(!node.stderr.contains(Self.tokenA) && !node.stderr.contains(Self.tokenB), "no secret in the log")
    }

    @Test("a node started without auth (with a TLS port, so SIGHUP reloads) stays without it when an auth section is added, and says a restart is needed")
    func addingNeedsRestart() throws {
        let ca = try TestCA()
        defer { ca.cleanUp() }
        let server = try ca.issueServer()
        let directory = ZbusProcess.makeTemporaryDirectory("zbus-auth-reload")
        let nodeFile = directory.appendingPathComponent("node.yaml")
        let base = """
            node:
              log_level: info
              tls:
                listen: 127.0.0.1:0
                cert_file: \(server.certificateFile)
                key_file: \(server.keyFile)
            modules:
              - module: mq

            """
        try base.write(to: nodeFile, atomically: true, encoding: .utf8)
        let node = try ZbusProcess(arguments: ["--config", nodeFile.path], directory: directory)
        defer { node.cleanUp() }
        try (base + "auth:\n  tokens:\n    - { name: app, secret: \(Self.tokenA), admin: [\"*\"] }\n")
            .write(to: nodeFile, atomically: true, encoding: .utf8)
        kill(node.process.processIdentifier, SIGHUP)
        #expect(node.waitForLog("auth reload failed"), "\(node.stderr)")
        let failure = try #require(node.stderr.split(separator: "\n").first { $0.contains("auth reload failed") })
        #expect(failure.contains("\(nodeFile.path):9:") && failure.contains("adding an `auth` section takes a restart"), "\(failure)")
        #expect(node.waitForLog("TLS certificate reloaded"), "the TLS files are reloaded all the same")
        let client = try node.connect()
        defer { client.close() }
        client.request([("cmd", "create_mq"), ("mq_name", "Open"), ("mq_mode", "1")])
        #expect(try client.receive(timeout: 10).status == 200, "still no access control")
        #expect(node.isRunning)
    }
}
