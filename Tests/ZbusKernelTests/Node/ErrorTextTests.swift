import NIOCore
import NIOPosix
import Testing
import ZbusKernel

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The texts people read when the system refuses something: one line, `operation: reason (errno N)`.
@Suite("Error texts")
struct ErrorTextTests {
    @Test("an IOError reads 'operation: reason (errno N)', without NIO's stray ')' or the function's signature")
    func ioError() {
        let text = ErrorText.describe(IOError(errnoCode: EADDRINUSE, reason: "bind(descriptor:ptr:bytes:)"))
        #expect(text == "bind: \(ErrorText.reason(errno: EADDRINUSE)) (errno \(EADDRINUSE))")
        #expect(!text.contains(")) (") && !text.contains(") (errno"))
        // A reason that is not a Swift signature is kept whole.
        #expect(ErrorText.describe(IOError(errnoCode: ECONNREFUSED, reason: "connection reset (error set)"))
            == "connection reset (error set): \(ErrorText.reason(errno: ECONNREFUSED)) (errno \(ECONNREFUSED))")
        #expect(ErrorText.reason(errno: EADDRINUSE) == String(cString: strerror(EADDRINUSE)))
    }

    @Test("errors that are not the system's read as their own description")
    func otherErrors() {
        #expect(ErrorText.describe(ChannelError.ioOnClosedChannel) == String(describing: ChannelError.ioOnClosedChannel))
    }

    @Test("a real bind on a busy port, and the node's start-up error built from it")
    func busyPort() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let first = try await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
        let port = try #require(first.localAddress?.port)
        do {
            let second = try await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: port).get()
            try await second.close()
            Issue.record("a second bind on port \(port) succeeded")
        } catch {
            let reason = ErrorText.describe(error)
            #expect(reason == "bind: \(ErrorText.reason(errno: EADDRINUSE)) (errno \(EADDRINUSE))")
            let address = HostAndPort(host: "127.0.0.1", port: port)
            #expect(NodeError.bindFailed(address: address, reason: reason).description
                == "cannot listen on 127.0.0.1:\(port): \(reason) (choose another `node.listen` or pass --listen HOST:PORT)")
        }
        try await first.close()
    }
}
