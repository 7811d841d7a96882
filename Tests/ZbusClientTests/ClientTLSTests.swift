import Foundation
import Testing
import Zbus
import ZbusTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// The Swift client over TLS (`ClientConfiguration.tls`) against the real binary's TLS port.
@Suite("Client: TLS", .serialized, .blockingIO)
struct ClientTLSTests {
    /// A node with the `mq` module and a TLS port; client certificates required when `clientCA` is given.
    static func startTLSNode(ca: TestCA, clientCA: String? = nil) throws -> ZbusProcess {
        let server = try ca.issueServer()
        let directory = ZbusProcess.makeTemporaryDirectory("zbus-client-tls")
        var yaml = """
            node:
              log_level: info
              tls:
                listen: 127.0.0.1:0
                cert_file: \(server.certificateFile)
                key_file: \(server.keyFile)

            """
        if let clientCA { yaml += "    ca_file: \(clientCA)\n" }
        yaml += "modules:\n  - module: mq\n"
        let path = directory.appendingPathComponent("node.yaml")
        try yaml.write(to: path, atomically: true, encoding: .utf8)
        return try ZbusProcess(arguments: ["--config", path.path], directory: directory)
    }

    static func configuration(_ tls: ClientTLS) -> ClientConfiguration {
        var configuration = quickConfiguration()
        configuration.tls = tls
        return configuration
    }

    @Test("produce and consume over TLS with a client certificate; the connection outlives a certificate reload")
    func produceConsume() async throws {
        let ca = try TestCA()
        defer { ca.cleanUp() }
        let issued = try ca.issueClient()
        let node = try Self.startTLSNode(ca: ca, clientCA: ca.caFile)
        defer { node.cleanUp() }
        let tls = try ClientTLS(caFile: ca.caFile, certificateFile: issued.certificateFile, keyFile: issued.keyFile)
        let broker = try SingleBroker(address: "127.0.0.1:\(node.tlsPort)", configuration: Self.configuration(tls), poolSize: 1)
        let producer = Producer(broker: broker, mq: "Secure")
        try await producer.createMQ()
        for index in 1...3 {
            let ack = try await producer.send(textMessage("secret \(index)", [("id", "s\(index)")]))
            #expect(ack.status == 200)
        }
        // Open connections keep the context they were made with: a reload does not disturb them.
        _ = try ca.issueServer(commonName: "renewed", serial: 77)
        kill(node.process.processIdentifier, SIGHUP)
        #expect(try await onOwnThread { node.waitForLog("TLS certificate reloaded") })
        let consumer = Consumer(broker: broker, mq: "Secure")
        for index in 1...3 {
            let message = try #require(try await consumer.take(timeout: .seconds(5)))
            #expect(message.bodyString == "secret \(index)")
        }
        await consumer.close()
        await broker.close()
    }

    @Test("the client refuses a server its CA does not vouch for, and a node requiring certificates refuses a client without one")
    func refusals() async throws {
        let ca = try TestCA()
        defer { ca.cleanUp() }
        let other = try TestCA(name: "another CA")
        defer { other.cleanUp() }
        let node = try Self.startTLSNode(ca: ca, clientCA: ca.caFile)
        defer { node.cleanUp() }
        for tls in [try ClientTLS(caFile: other.caFile), try ClientTLS(caFile: ca.caFile)] {
            let broker = try SingleBroker(address: "127.0.0.1:\(node.tlsPort)", configuration: Self.configuration(tls), poolSize: 1)
            await #expect(throws: ZbusClientError.self) {
                _ = try await Producer(broker: broker, mq: "Secure").createMQ()
            }
            await broker.close()
        }
    }

    @Test("ClientTLS names a bad file and never its contents")
    func badFiles() throws {
        let ca = try TestCA()
        defer { ca.cleanUp() }
        let issued = try ca.issueClient()
        #expect(throws: TLSFileError.self) { try ClientTLS(caFile: "/nonexistent/ca.pem") }
        do {
            _ = try ClientTLS(caFile: ca.caFile, certificateFile: issued.certificateFile, keyFile: issued.certificateFile)
            Issue.record("a certificate given as the key was accepted")
        } catch {
            #expect(error.file == issued.certificateFile)
            #expect(error.role == .privateKey)
            #expect(!error.description.contains("BEGIN"))
        }
        #expect(throws: TLSFileError.self) { try ClientTLS(caFile: ca.caFile, certificateFile: issued.certificateFile) }
    }
}

/// The tracker links and the HA client in TLS: a TLS-only tracker, a TLS-only broker that reports to it through
/// `node.tls.client`, and an `HaBroker` whose tracker and broker connections are all TLS.
@Suite("HA: TLS", .blockingIO(.heavy))
struct HaTLSTests {
    static func startNode(_ name: String, ca: TestCA, server: TestCA.Issued, extra: String) throws -> ZbusProcess {
        let directory = ZbusProcess.makeTemporaryDirectory("zbus-ha-tls-\(name)")
        let file = directory.appendingPathComponent("node.yaml")
        try """
            node:
              name: \(name)
              log_level: info
              tls:
                listen: 127.0.0.1:0
                cert_file: \(server.certificateFile)
                key_file: \(server.keyFile)
                ca_file: \(ca.caFile)
                client: { ca_file: "\(ca.caFile)", cert_file: "\(server.certificateFile)", key_file: "\(server.keyFile)" }
            \(extra)
            """.write(to: file, atomically: true, encoding: .utf8)
        return try ZbusProcess(arguments: ["--config", file.path], directory: directory, listen: "none")
    }

    @Test("a broker reports to its tracker in TLS, and the HA client finds it and produces and consumes, all in TLS")
    func haOverTLS() async throws {
        let ca = try TestCA()
        defer { ca.cleanUp() }
        // Each node's certificate serves both ends of its links: its TLS port, and its tracker link (client use).
        let tracker = try Self.startNode("tracker", ca: ca, server: try ca.issueServer(file: "tracker"),
                                         extra: "modules:\n  - module: tracker")
        defer { tracker.cleanUp() }
        let broker = try Self.startNode("broker", ca: ca, server: try ca.issueServer(file: "broker"),
                                        extra: "trackers: [127.0.0.1:\(tracker.tlsPort)]\nmodules:\n  - module: mq")
        defer { broker.cleanUp() }
        let client = try ca.issueClient()
        var configuration = quickConfiguration()
        configuration.tls = try ClientTLS(caFile: ca.caFile, certificateFile: client.certificateFile, keyFile: client.keyFile)
        let ha = HaBroker(trackers: [HostAndPort(host: "127.0.0.1", port: tracker.tlsPort)], configuration: configuration)
        let address = "127.0.0.1:\(broker.tlsPort)"
        let known = await ha.waitForTopology(timeout: .seconds(15)) { $0.serverAddresses.contains(address) }
        #expect(known != nil, "the tracker learnt the broker over TLS and told the client over TLS: \(broker.stderr)")
        let producer = Producer(broker: ha, mq: "HaSecure")
        try await producer.createMQ()
        #expect(try await producer.send(textMessage("across")).status == 200)
        let consumer = Consumer(broker: ha, mq: "HaSecure")
        #expect(try await consumer.take(timeout: .seconds(5))?.bodyString == "across")
        await consumer.close()
        await ha.close()
    }
}
