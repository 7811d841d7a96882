import Foundation
import Testing
import ZbusTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Acceptance 1 of issue 20 (TLS), through the real binary: a test CA made with openssl, curl and openssl s_client as
/// clients, an RPC service node whose broker link is TLS, and certificate reload on SIGHUP.
@Suite("TLS port", .serialized, .blockingIO(.heavy))
struct TLSTests {
    static let curl = "/usr/bin/curl"

    /// A node file with the `mq` and `monitor` modules and a TLS port on an OS-chosen port.
    static func nodeFile(_ directory: URL, server: TestCA.Issued, clientCA: String? = nil, extra: String = "",
                         nodeExtra: String = "") throws -> String {
        var yaml = """
            node:
              log_level: info
            \(nodeExtra)
              tls:
                listen: 127.0.0.1:0
                cert_file: \(server.certificateFile)
                key_file: \(server.keyFile)

            """
        if let clientCA { yaml += "    ca_file: \(clientCA)\n" }
        yaml += "modules:\n  - module: mq\n  - module: monitor\n" + extra
        let path = directory.appendingPathComponent("node-\(UUID().uuidString).yaml")
        try yaml.write(to: path, atomically: true, encoding: .utf8)
        return path.path
    }

    /// Runs curl against the node's TLS port; returns its exit status and output.
    static func curlTLS(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        try #require(FileManager.default.isExecutableFile(atPath: curl), "curl is needed for this test (apt-get install curl)")
        return try runCommand(curl, ["-s", "-S", "-m", "10"] + arguments)
    }

    /// The subject and serial of the certificate a new TLS connection to `port` is served (`openssl s_client`).
    static func servedCertificate(port: Int, ca: String) throws -> String {
        let script = "openssl s_client -connect 127.0.0.1:\(port) -CAfile '\(ca)' </dev/null 2>/dev/null | openssl x509 -noout -subject -serial"
        let result = try runCommand("/bin/sh", ["-c", script], timeout: 30)
        return result.stdout
    }

    @Test("curl --cacert gets OK for `cmd: test` over the TLS port, and the monitor's /metrics and page too; the plain port still answers")
    func curlOverTLS() throws {
        let ca = try TestCA()
        defer { ca.cleanUp() }
        let server = try ca.issueServer()
        let directory = ZbusProcess.makeTemporaryDirectory("zbus-tls")
        let node = try ZbusProcess(arguments: ["--config", try Self.nodeFile(directory, server: server)], directory: directory)
        defer { node.cleanUp() }
        try #require(node.tlsPort > 0, "the ready file's .tls companion names the TLS port")
        #expect(node.tlsPort != node.port)

        let test = try Self.curlTLS(["--cacert", ca.caFile, "-H", "cmd: test", "https://127.0.0.1:\(node.tlsPort)/"])
        #expect(test.stdout == "OK", "\(test.stderr)")
        let byName = try Self.curlTLS(["--cacert", ca.caFile, "https://localhost:\(node.tlsPort)/?cmd=test"])
        #expect(byName.stdout == "OK", "the DNS name of the certificate works too: \(byName.stderr)")
        let metrics = try Self.curlTLS(["--cacert", ca.caFile, "https://127.0.0.1:\(node.tlsPort)/metrics"])
        #expect(metrics.stdout.contains("# TYPE"), "metrics over TLS: \(metrics.stdout.prefix(200)) \(metrics.stderr)")
        let page = try Self.curlTLS(["--cacert", ca.caFile, "-o", "/dev/null", "-w", "%{http_code}", "https://127.0.0.1:\(node.tlsPort)/"])
        #expect(page.stdout == "200", "the monitor page over TLS")
        // Without the CA, curl refuses the server (the certificate is really checked).
        let untrusted = try Self.curlTLS(["-H", "cmd: test", "https://127.0.0.1:\(node.tlsPort)/"])
        #expect(untrusted.status != 0)
        #expect(untrusted.stdout.isEmpty)
        // The plain port is unchanged.
        let plain = try Self.curlTLS(["-H", "cmd: test", "http://127.0.0.1:\(node.port)/"])
        #expect(plain.stdout == "OK")
        #expect(!node.stderr.contains("PRIVATE KEY"), "no key material in the log")
        #expect(node.stderr.contains("tls_address"), "the start line names the TLS port")
    }

    @Test("a plaintext zbus client on the TLS port is refused: the connection closes and no zbus reply comes")
    func plaintextRefused() throws {
        let ca = try TestCA()
        defer { ca.cleanUp() }
        let directory = ZbusProcess.makeTemporaryDirectory("zbus-tls")
        let node = try ZbusProcess(arguments: ["--config", try Self.nodeFile(directory, server: try ca.issueServer())], directory: directory)
        defer { node.cleanUp() }
        let client = try WireClient(port: node.tlsPort)
        client.request([("cmd", "test"), ("id", "plain")])
        let reply = try client.readUntilClose(timeout: 10)
        #expect(reply.closed)
        let text = String(decoding: reply.bytes, as: UTF8.self)
        #expect(!text.contains("HTTP/1.1"), "no zbus reply: \(text.prefix(100))")
        #expect(!text.contains("OK"))
        // curl in plain HTTP is refused alike.
        let plainCurl = try Self.curlTLS(["-H", "cmd: test", "http://127.0.0.1:\(node.tlsPort)/"])
        #expect(plainCurl.stdout != "OK")
        #expect(node.isRunning)
        let after = try Self.curlTLS(["--cacert", ca.caFile, "-H", "cmd: test", "https://127.0.0.1:\(node.tlsPort)/"])
        #expect(after.stdout == "OK")
    }

    @Test("a client that stalls its handshake is closed after header_timeout, not the idle timeout; a finished handshake is not")
    func stalledHandshakeClosed() throws {
        let ca = try TestCA()
        defer { ca.cleanUp() }
        let directory = ZbusProcess.makeTemporaryDirectory("zbus-tls")
        let file = try Self.nodeFile(directory, server: try ca.issueServer(),
                                     nodeExtra: "  limits:\n    header_timeout: 1s\n    idle_timeout: 600s\n")
        let node = try ZbusProcess(arguments: ["--config", file], directory: directory)
        defer { node.cleanUp() }
        // One peer sends the start of a ClientHello (a handshake record announcing 200 bytes) and stops; another
        // connects and sends nothing. Both hold a connection slot until the node closes them.
        let partial = try WireClient(port: node.tlsPort)
        #expect(partial.send([0x16, 0x03, 0x01, 0x00, 0xC8, 0x01, 0x00]))
        let silent = try WireClient(port: node.tlsPort)
        let partialEnd = try partial.readUntilClose(timeout: 15)
        let silentEnd = try silent.readUntilClose(timeout: 15)
        #expect(partialEnd.closed, "a trickled handshake is closed within the header timeout")
        #expect(silentEnd.closed, "a connection that never starts its handshake is closed within the header timeout")
        #expect(node.stderr.contains("TLS handshake not completed"), "the log says why")
        // A client whose handshake completed is not held to it: it sends its request after more than the timeout.
        let script = """
            (sleep 2; printf 'GET /?cmd=test HTTP/1.1\\r\\nid: late\\r\\n\\r\\n'; sleep 2) | \
            openssl s_client -connect 127.0.0.1:\(node.tlsPort) -CAfile '\(ca.caFile)' 2>/dev/null
            """
        let late = try runCommand("/bin/sh", ["-c", script], timeout: 30)
        #expect(late.stdout.contains("HTTP/1.1 200") && late.stdout.contains("late"), "an established TLS connection outlives the handshake deadline: \(late.stdout.prefix(200))")
        #expect(node.isRunning)
    }

    @Test("with ca_file, a client without a certificate is refused, one with a certificate of another CA too, and one with the CA's client certificate works")
    func clientCertificates() throws {
        let ca = try TestCA()
        defer { ca.cleanUp() }
        let other = try TestCA(name: "another CA")
        defer { other.cleanUp() }
        let server = try ca.issueServer()
        let client = try ca.issueClient()
        let stranger = try other.issueClient(commonName: "stranger")
        let directory = ZbusProcess.makeTemporaryDirectory("zbus-tls")
        let node = try ZbusProcess(arguments: ["--config", try Self.nodeFile(directory, server: server, clientCA: ca.caFile)],
                                   directory: directory)
        defer { node.cleanUp() }
        let url = "https://127.0.0.1:\(node.tlsPort)/?cmd=test"
        let anonymous = try Self.curlTLS(["--cacert", ca.caFile, url])
        #expect(anonymous.status != 0, "no client certificate: refused")
        #expect(anonymous.stdout.isEmpty)
        #expect(node.waitForLog("TLS handshake failed"), "the node logs why it refused: \(node.stderr)")
        let foreign = try Self.curlTLS(["--cacert", ca.caFile, "--cert", stranger.certificateFile, "--key", stranger.keyFile, url])
        #expect(foreign.status != 0, "a certificate of another CA: refused")
        #expect(foreign.stdout.isEmpty)
        let known = try Self.curlTLS(["--cacert", ca.caFile, "--cert", client.certificateFile, "--key", client.keyFile, url])
        #expect(known.stdout == "OK", "\(known.stderr)")
    }

    @Test("TLS only (`--listen none`): the ready file names the TLS port, the node serves there, the operator CLI connects with --tls-ca")
    func tlsOnly() throws {
        let ca = try TestCA()
        defer { ca.cleanUp() }
        let directory = ZbusProcess.makeTemporaryDirectory("zbus-tls")
        let node = try ZbusProcess(arguments: ["--config", try Self.nodeFile(directory, server: try ca.issueServer())],
                                   directory: directory, listen: "none")
        defer { node.cleanUp() }
        #expect(node.port == node.tlsPort)
        let test = try Self.curlTLS(["--cacert", ca.caFile, "-H", "cmd: test", "https://127.0.0.1:\(node.tlsPort)/"])
        #expect(test.stdout == "OK", "\(test.stderr)")

        // The operator CLI in TLS, and refused in plain TCP.
        let server = "127.0.0.1:\(node.tlsPort)"
        let created = try runCommand(ZbusProcess.binaryPath, ["mq", "create", "Ops", "--server", server, "--tls-ca", ca.caFile])
        #expect(created.status == 0, "\(created.stderr)")
        let listed = try runCommand(ZbusProcess.binaryPath, ["mq", "list", "--server", server, "--tls-ca", ca.caFile, "--json"])
        #expect(listed.status == 0, "\(listed.stderr)")
        #expect(listed.stdout.contains("\"Ops\""))
        let plain = try runCommand(ZbusProcess.binaryPath, ["mq", "list", "--server", server, "--timeout", "2"])
        #expect(plain.status != 0, "plain TCP to the TLS port fails")
        let badCA = try runCommand(ZbusProcess.binaryPath, ["mq", "list", "--server", server, "--tls-ca", "/nonexistent/ca.pem"])
        #expect(badCA.status == 64, "a bad CA file is a usage error: \(badCA.stderr)")
        #expect(badCA.stderr.contains("/nonexistent/ca.pem"))
    }

    @Test("an MQ-RPC call crosses TLS: curl over TLS to the broker, whose only link to the service node is its TLS port")
    func rpcOverTLS() throws {
        let ca = try TestCA()
        defer { ca.cleanUp() }
        let client = try ca.issueClient(commonName: "rpc-service")
        let directory = ZbusProcess.makeTemporaryDirectory("zbus-tls")
        // The broker requires client certificates on its TLS port: the service node must present one.
        let broker = try ZbusProcess(arguments: ["--config", try Self.nodeFile(directory, server: try ca.issueServer(), clientCA: ca.caFile)],
                                     directory: directory)
        defer { broker.cleanUp() }
        let serviceDirectory = ZbusProcess.makeTemporaryDirectory("zbus-tls-rpc")
        let serviceFile = serviceDirectory.appendingPathComponent("rpc.yaml")
        try """
            node:
              log_level: info
            modules:
              - module: rpc
                services:
                  - service: calc
                    mq: Calc
                    broker: "127.0.0.1:\(broker.tlsPort)"
                    broker_tls: { ca_file: "\(ca.caFile)", cert_file: "\(client.certificateFile)", key_file: "\(client.keyFile)" }
                    workers: 1
                    poll_timeout: 2s
            """.write(to: serviceFile, atomically: true, encoding: .utf8)
        let service = try ZbusProcess(arguments: ["--config", serviceFile.path], directory: serviceDirectory)
        defer { service.cleanUp() }
        try broker.waitForConsumers("Calc", count: 1)
        let call = try Self.curlTLS(["--cacert", ca.caFile, "--cert", client.certificateFile, "--key", client.keyFile,
                                     "-H", "cmd: produce", "-H", "mq: Calc", "-H", "ack: 0",
                                     "-d", #"{"method":"plus","params":[20,22]}"#, "https://127.0.0.1:\(broker.tlsPort)/"])
        #expect(call.stdout == #"{"result":42,"error":null,"stackTrace":null,"encoding":"UTF-8"}"#, "\(call.stderr)")
    }

    @Test("direct RPC in TLS: `direct_tls: true` serves the direct port with the node's certificate; plain HTTP there is refused")
    func directRpcOverTLS() throws {
        let ca = try TestCA()
        defer { ca.cleanUp() }
        let directory = ZbusProcess.makeTemporaryDirectory("zbus-tls")
        let extra = "  - module: rpc\n    services:\n      - { service: calc, direct: \"127.0.0.1:0\", direct_tls: true }\n"
        let file = try Self.nodeFile(directory, server: try ca.issueServer(), extra: extra,
                                     nodeExtra: "  limits:\n    header_timeout: 1s\n")
        let node = try ZbusProcess(arguments: ["--config", file], directory: directory)
        defer { node.cleanUp() }
        let line = try #require(node.stderr.split(separator: "\n").first { $0.contains("direct RPC server listening") })
        #expect(line.contains("tls=true"))
        let address = try #require(line.split(separator: " ").first { $0.hasPrefix("direct=") }?.dropFirst("direct=".count))
        let secure = try Self.curlTLS(["--cacert", ca.caFile, "https://\(address)/calc/plus?params=1,2"])
        #expect(secure.stdout.hasPrefix(#"{"result":3,"#), "\(secure.stderr)")
        let plain = try Self.curlTLS(["http://\(address)/calc/plus?params=1,2"])
        #expect(!plain.stdout.contains("result"))
        // A connection that never starts its handshake is closed after the header timeout, as on the node's port.
        let parts = address.split(separator: ":")
        let silent = try WireClient(host: String(parts[0]), port: try #require(Int(parts[1])))
        #expect(try silent.readUntilClose(timeout: 15).closed, "a stalled handshake on the direct port is closed")

        // Without node.tls, `direct_tls: true` is a configuration error at its key.
        let bad = directory.appendingPathComponent("bad.yaml").path
        try "modules:\n\(extra)".write(toFile: bad, atomically: true, encoding: .utf8)
        let check = try runCommand(ZbusProcess.binaryPath, ["check-config", bad])
        #expect(check.status == 2)
        #expect(check.stderr.contains("direct_tls"), "\(check.stderr)")
        #expect(check.stderr.contains("no `node.tls`"))
    }

    @Test("SIGHUP reloads the certificate: a new connection sees the new one; a broken file keeps the one in use")
    func reloadOnSighup() throws {
        let ca = try TestCA()
        defer { ca.cleanUp() }
        let first = try ca.issueServer(commonName: "first-cert", serial: 4097)
        let directory = ZbusProcess.makeTemporaryDirectory("zbus-tls")
        let node = try ZbusProcess(arguments: ["--config", try Self.nodeFile(directory, server: first)], directory: directory)
        defer { node.cleanUp() }
        let before = try Self.servedCertificate(port: node.tlsPort, ca: ca.caFile)
        #expect(before.contains("CN = first-cert"), "\(before)")

        _ = try ca.issueServer(commonName: "second-cert", serial: 8194)
        kill(node.process.processIdentifier, SIGHUP)
        #expect(node.waitForLog("TLS certificate reloaded"), "\(node.stderr)")
        let after = try Self.servedCertificate(port: node.tlsPort, ca: ca.caFile)
        #expect(after.contains("CN = second-cert"), "\(after)")
        #expect(after.contains("serial=2002"), "serial 8194 in hex: \(after)")
        #expect(node.isRunning)

        // A broken key file: the reload fails, is logged with the file's name, and the second certificate stays.
        try "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n".write(toFile: first.keyFile, atomically: true, encoding: .utf8)
        kill(node.process.processIdentifier, SIGHUP)
        #expect(node.waitForLog("TLS reload failed"), "\(node.stderr)")
        #expect(node.stderr.contains(first.keyFile), "the error names the file")
        #expect(!node.stderr.contains("not a key"), "the file's contents are not logged")
        let kept = try Self.servedCertificate(port: node.tlsPort, ca: ca.caFile)
        #expect(kept.contains("CN = second-cert"), "\(kept)")
        let test = try Self.curlTLS(["--cacert", ca.caFile, "-H", "cmd: test", "https://127.0.0.1:\(node.tlsPort)/"])
        #expect(test.stdout == "OK")
    }

    @Test("SIGHUP reloads the direct RPC ports' certificates too: `direct_tls: true` follows the node's, files of its own are read again; a broken one keeps its certificate")
    func directRpcReloadOnSighup() throws {
        let ca = try TestCA()
        defer { ca.cleanUp() }
        let nodeCert = try ca.issueServer(commonName: "first-node", serial: 4097)
        let own = try ca.issueServer(commonName: "first-direct", serial: 4098, file: "direct")
        let directory = ZbusProcess.makeTemporaryDirectory("zbus-tls")
        let extra = """
              - module: rpc
                services:
                  - { service: calc, direct: "127.0.0.1:0", direct_tls: true }
                  - { service: calc, direct: "127.0.0.1:0", direct_tls: { cert_file: "\(own.certificateFile)", key_file: "\(own.keyFile)" } }

            """
        let node = try ZbusProcess(arguments: ["--config", try Self.nodeFile(directory, server: nodeCert, extra: extra)], directory: directory)
        defer { node.cleanUp() }
        let ports = node.stderr.split(separator: "\n").filter { $0.contains("direct RPC server listening") }.compactMap { line in
            line.split(separator: " ").first { $0.hasPrefix("direct=") }.flatMap { Int($0.split(separator: ":").last ?? "") }
        }
        try #require(ports.count == 2, "\(node.stderr)")
        let (sharing, owning) = (ports[0], ports[1])
        #expect(try Self.servedCertificate(port: sharing, ca: ca.caFile).contains("CN = first-node"))
        #expect(try Self.servedCertificate(port: owning, ca: ca.caFile).contains("CN = first-direct"))

        // New files in place, then SIGHUP: the node's store and the direct port's own store both reload.
        _ = try ca.issueServer(commonName: "second-node", serial: 8194)
        _ = try ca.issueServer(commonName: "second-direct", serial: 8195, file: "direct")
        kill(node.process.processIdentifier, SIGHUP)
        #expect(node.waitForLog("TLS certificate reloaded", occurrences: 2), "\(node.stderr)")
        let shared = try Self.servedCertificate(port: sharing, ca: ca.caFile)
        #expect(shared.contains("CN = second-node"), "direct_tls: true follows the node's certificate: \(shared)")
        let reloaded = try Self.servedCertificate(port: owning, ca: ca.caFile)
        #expect(reloaded.contains("CN = second-direct") && reloaded.contains("serial=2003"), "\(reloaded)")
        let call = try Self.curlTLS(["--cacert", ca.caFile, "https://127.0.0.1:\(owning)/calc/plus?params=1,2"])
        #expect(call.stdout.hasPrefix(#"{"result":3,"#), "\(call.stderr)")

        // A broken key of the direct port: logged naming the file; that port keeps its certificate, the node's reloads.
        try "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n".write(toFile: own.keyFile, atomically: true, encoding: .utf8)
        kill(node.process.processIdentifier, SIGHUP)
        #expect(node.waitForLog("TLS reload failed"), "\(node.stderr)")
        #expect(node.waitForLog("TLS certificate reloaded", occurrences: 3), "the node's own reload still happens")
        let failure = try #require(node.stderr.split(separator: "\n").first { $0.contains("TLS reload failed") })
        #expect(failure.contains(own.keyFile), "the error names the file: \(failure)")
        #expect(failure.contains("service=calc"), "and the service: \(failure)")
        #expect(!node.stderr.contains("not a key"))
        #expect(try Self.servedCertificate(port: owning, ca: ca.caFile).contains("CN = second-direct"))
        #expect(node.isRunning)
    }

    @Test("bad TLS files: check-config and the start name the file, line and key and exit 2")
    func badFiles() throws {
        let ca = try TestCA()
        defer { ca.cleanUp() }
        let server = try ca.issueServer()
        let other = try ca.issueServer(file: "other")
        let directory = ZbusProcess.makeTemporaryDirectory("zbus-tls")
        defer { try? FileManager.default.removeItem(at: directory) }
        let cases: [(String, String, String)] = [
            ("cert_file: /nonexistent/server.pem\n    key_file: \(server.keyFile)", "node.tls.cert_file", "/nonexistent/server.pem"),
            ("cert_file: \(server.certificateFile)\n    key_file: \(server.certificateFile)", "node.tls.key_file", "no PEM block"),
            ("cert_file: \(server.certificateFile)\n    key_file: \(other.keyFile)", "node.tls.key_file", "does the key belong to it?"),
            ("cert_file: \(server.keyFile)\n    key_file: \(server.keyFile)", "node.tls.cert_file", "no PEM block"),
            ("cert_file: \(server.certificateFile)\n    key_file: \(server.keyFile)\n    ca_file: /nonexistent/ca.pem", "node.tls.ca_file", "ca.pem"),
        ]
        for (index, (files, key, reason)) in cases.enumerated() {
            let path = directory.appendingPathComponent("bad-\(index).yaml").path
            try "node:\n  tls:\n    listen: 127.0.0.1:0\n    \(files)\n".write(toFile: path, atomically: true, encoding: .utf8)
            let check = try runCommand(ZbusProcess.binaryPath, ["check-config", path])
            #expect(check.status == 2, "\(key): \(check.stderr)")
            #expect(check.stderr.contains("\(path):"), "names the file: \(check.stderr)")
            #expect(check.stderr.contains(key), "names the key: \(check.stderr)")
            #expect(check.stderr.contains(reason), "says why: \(check.stderr)")
            #expect(!check.stderr.contains("BEGIN"), "no file contents: \(check.stderr)")
            let start = try runCommand(ZbusProcess.binaryPath, ["--config", path, "--listen", "127.0.0.1:0", "--store", directory.appendingPathComponent("store").path])
            #expect(start.status == 2, "the start refuses it too: \(start.stderr)")
            #expect(start.stderr.contains(key))
        }
        let good = directory.appendingPathComponent("good.yaml").path
        try "node:\n  listen: none\n  tls:\n    listen: 127.0.0.1:0\n    cert_file: \(server.certificateFile)\n    key_file: \(server.keyFile)\n"
            .write(toFile: good, atomically: true, encoding: .utf8)
        let check = try runCommand(ZbusProcess.binaryPath, ["check-config", good])
        #expect(check.status == 0, "\(check.stderr)")
        #expect(check.stdout.contains("TLS 127.0.0.1:0"))
    }
}
