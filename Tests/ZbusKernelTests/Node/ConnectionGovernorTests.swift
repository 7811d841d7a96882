import NIOCore
import Testing

@testable import ZbusKernel

/// The node-wide connection bookkeeping behind `node.limits`.
@Suite("Connection governor")
struct ConnectionGovernorTests {
    @Test("connections are counted per IPv4 address and per IPv6 /64; an IPv4-mapped address counts as its IPv4 one")
    func addressKeys() throws {
        #expect(ConnectionGovernor.addressKey(try SocketAddress(ipAddress: "10.1.2.3", port: 1)) == "10.1.2.3")
        let one = ConnectionGovernor.addressKey(try SocketAddress(ipAddress: "2001:db8:1:2:aaaa::1", port: 1))
        let other = ConnectionGovernor.addressKey(try SocketAddress(ipAddress: "2001:db8:1:2:ffff:1:2:3", port: 2))
        let neighbour = ConnectionGovernor.addressKey(try SocketAddress(ipAddress: "2001:db8:1:3::1", port: 1))
        #expect(one == "2001:db8:1:2::/64")
        #expect(one == other)
        #expect(one != neighbour)
        #expect(ConnectionGovernor.addressKey(try SocketAddress(ipAddress: "::ffff:192.0.2.7", port: 1)) == "192.0.2.7")
    }

    @Test("admission refuses past the total and the per-address caps, naming the key, and a release frees the place")
    func admission() {
        let governor = ConnectionGovernor(limits: ConnectionLimits(
            maxConnections: 3, maxConnectionsPerAddress: 2, idleTimeoutMilliseconds: 0, headerTimeoutMilliseconds: 0,
            maxOutputBytes: 1 << 20, maxBufferedBytes: 1 << 20))
        #expect(governor.admit(address: "a") == nil)
        #expect(governor.admit(address: "a") == nil)
        #expect(governor.admit(address: "a")?.contains("node.limits.max_connections_per_address") == true)
        #expect(governor.admit(address: "b") == nil)
        #expect(governor.admit(address: "c")?.contains("node.limits.max_connections)") == true)
        governor.release(address: "a")
        #expect(governor.admit(address: "c") == nil)
        #expect(governor.connectionCount == 3)
    }
}
