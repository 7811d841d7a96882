import Foundation
import Testing
import Zbus
import ZbusClient
import ZbusTestSupport

extension BusCaller {
    /// A caller through `broker` (a TLS one, say).
    init(broker: any Broker) { self.broker = broker }
}

/// A proxy call crosses TLS: the broker listens in TLS only and requires client certificates; the proxy node's
/// `broker:` link and the caller both connect in TLS.
@Suite("Proxy over TLS", .serialized, .blockingIO(.heavy))
struct ProxyTLSTests {
    @Test("a proxy node whose broker link is TLS serves an MQ of a TLS-only broker to a TLS caller")
    func proxyCallOverTLS() async throws {
        let ca = try TestCA()
        defer { ca.cleanUp() }
        let server = try ca.issueServer()
        let client = try ca.issueClient(commonName: "proxy-node")
        let legacy = try await LegacyServer.http()
        let directory = ZbusProcess.makeTemporaryDirectory("zbus-proxy-tls")
        let brokerFile = try nodeFile(directory, """
            node:
              tls:
                listen: 127.0.0.1:0
                cert_file: \(server.certificateFile)
                key_file: \(server.keyFile)
                ca_file: \(ca.caFile)
            modules:
              - module: mq
            """)
        let broker = try ZbusProcess(arguments: ["--config", brokerFile], directory: directory, listen: "none")
        defer { broker.cleanUp() }
        let proxy = try startNode("""
            modules:
              - module: proxy
                broker: 127.0.0.1:\(broker.tlsPort)
                broker_tls:
                  ca_file: \(ca.caFile)
                  cert_file: \(client.certificateFile)
                  key_file: \(client.keyFile)
                adapters:
                  - { name: remote-web, kind: http, mq: Remote, target: "http://127.0.0.1:\(legacy.port)", workers: 2 }
            """)
        defer { proxy.cleanUp() }
        var configuration = ClientConfiguration()
        configuration.tls = try ClientTLS(caFile: ca.caFile, certificateFile: client.certificateFile, keyFile: client.keyFile)
        let caller = BusCaller(broker: try SingleBroker(address: "127.0.0.1:\(broker.tlsPort)", configuration: configuration))
        let reply = try await caller.call("Remote", "through tls")
        #expect(reply.status == 200)
        #expect(reply.bodyString == "legacy POST / body=through tls x-test=-")
        await caller.broker.close()
        #expect(proxy.stop() == 0)
        #expect(broker.stop() == 0)
        await legacy.stop()
    }
}
