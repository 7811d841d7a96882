import Testing
@testable import ZbusKernel

/// `node.tls` and `node.listen: none` without files on disk: the keys' checks. (The files themselves are checked by
/// the TLS integration tests, with a CA made by openssl.)
@Suite("NodeConfig: node.tls")
struct TLSConfigTests {
    static let badFiles: [(yaml: String, expected: [String])] = [
        ("node:\n  listen: none\n", ["n.yaml:2:11", "node.listen", "`none` leaves the node without a port"]),
        ("node:\n  tls:\n    cert_file: a.pem\n    key_file: a.key\n", ["n.yaml:3:5", "node.tls", "missing `listen"]),
        ("node:\n  tls:\n    listen: 127.0.0.1:0\n    key_file: a.key\n", ["node.tls", "missing `cert_file:`"]),
        ("node:\n  tls:\n    listen: 127.0.0.1:0\n    cert_file: a.pem\n", ["node.tls", "missing `key_file:`"]),
        ("node:\n  tls:\n    listen: 127.0.0.1:0\n    cert: a.pem\n", ["n.yaml:4:5", "node.tls.cert", "unknown key", "cert_file"]),
        ("node:\n  tls:\n    listen: 127.0.0.1:0\n    cert_file: /nonexistent/a.pem\n    key_file: /nonexistent/a.key\n",
         ["n.yaml:4:16", "node.tls.cert_file", "certificate file '/nonexistent/a.pem': cannot open it"]),
        ("node:\n  tls: yes\n", ["n.yaml:2:8", "node.tls", "expected a mapping"]),
    ]

    @Test("bad node.tls sections name the file, line and key", arguments: 0..<badFiles.count)
    func badSection(index: Int) {
        let (yaml, expected) = Self.badFiles[index]
        do {
            _ = try NodeConfig.parse(yaml: yaml, file: "n.yaml")
            Issue.record("accepted: \(yaml)")
        } catch {
            for part in expected { #expect(error.description.contains(part), "\(error.description) lacks \(part)") }
        }
    }

    @Test("a client TLS section: `true` trusts the system's CAs, `false` is plain, unknown keys are refused")
    func clientSections() throws {
        let on = try ConfigSection(ConfigValue.parse(yaml: "broker_tls: true", file: "m.yaml"), allowedKeys: ["broker_tls"])
        #expect(try on.clientTLS("broker_tls")?.caFile == nil)
        #expect(try on.clientTLS("broker_tls") != nil)
        let off = try ConfigSection(ConfigValue.parse(yaml: "broker_tls: false", file: "m.yaml"), allowedKeys: ["broker_tls"])
        #expect(try off.clientTLS("broker_tls") == nil)
        let typo = try ConfigSection(ConfigValue.parse(yaml: "broker_tls: { ca: x.pem }", file: "m.yaml"), allowedKeys: ["broker_tls"])
        #expect(throws: ConfigError.self) { try typo.clientTLS("broker_tls") }
    }
}
