import NIOCore
import Testing
import ZbusClient
import ZbusTestSupport

#if canImport(Glibc)
import Glibc
#endif

@Suite("Client: connect failure text")
struct ConnectErrorTextTests {
    @Test("a refused connect names the address and the system's reason once, without NIO's stray parenthesis")
    func refused() async throws {
        let port = refusingPort()
        var configuration = quickConfiguration()
        configuration.connectTimeout = .milliseconds(300)
        let client = try MessageClient(address: "127.0.0.1:\(port)", configuration: configuration)
        var test = Message()
        test.cmd = "test"
        await #expect {
            _ = try await client.send(test)
        } throws: { error in
            let text = "\(error)"
            return text.hasPrefix("cannot connect to zbus at 127.0.0.1:\(port): 127.0.0.1:\(port): ")
                && text.contains("\(ErrorText.reason(errno: ECONNREFUSED)) (errno \(ECONNREFUSED)) (is the node running")
                && !text.contains(") (errno")
        }
        await client.close()
    }
}
