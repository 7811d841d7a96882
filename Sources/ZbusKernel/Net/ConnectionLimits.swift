import Atomics
import NIOConcurrencyHelpers
import NIOCore

/// What one client, or all of them together, may hold of a node: connections, time, and buffered bytes.
///
/// Set under `node.limits` in the node file. Each refusal or disconnection these cause names the key that caused it,
/// so an operator who sees it knows what to raise.
public struct ConnectionLimits: Sendable, Equatable {
    /// Open connections the node accepts in all (`max_connections`); beyond, a new connection gets 503 and is closed.
    public var maxConnections: Int
    /// Open connections from one IPv4 address or IPv6 /64 (`max_connections_per_address`).
    public var maxConnectionsPerAddress: Int
    /// A connection that neither sends nor receives a byte for this long is closed (`idle_timeout`, milliseconds;
    /// 0 turns it off). 2016 clients from 6.3.1 on send a heartbeat every 300 s, so the default keeps them.
    public var idleTimeoutMilliseconds: Int
    /// A message's header block must arrive whole within this long of its first byte (`header_timeout`,
    /// milliseconds; 0 turns it off); a peer that trickles headers (slowloris) gets 408 and is closed.
    public var headerTimeoutMilliseconds: Int
    /// Replies and deliveries one connection may have waiting for its peer to read (`max_output_bytes`) before the
    /// node closes it as a slow consumer (messages it held go back to their queues).
    public var maxOutputBytes: Int
    /// Bytes all connections together may hold in partial input and unread output (`max_buffered_bytes`); over it,
    /// the connection that grows past ``chargeThreshold`` is refused (input: 503) or closed (output).
    public var maxBufferedBytes: Int

    /// A connection's partial input counts against the node-wide budget from this size on, and a connection holding
    /// at least this much is shed when the budget is spent. Below it, a few reads' worth of a message in transit is
    /// normal and costs the common path nothing to ignore; what ignoring it can add up to is bounded by the
    /// connection limits (10,000 connections x 64 KiB).
    public static let chargeThreshold = 64 << 10

    /// The defaults: 10,000 connections, 1,000 per address, 10 min idle, 30 s for a header block, 64 MiB of
    /// unread output per connection, 1 GiB buffered in all.
    public static let `default` = ConnectionLimits(
        maxConnections: 10_000, maxConnectionsPerAddress: 1_000, idleTimeoutMilliseconds: 600_000,
        headerTimeoutMilliseconds: 30_000, maxOutputBytes: 64 << 20, maxBufferedBytes: 1 << 30)

    /// Creates limits.
    public init(maxConnections: Int, maxConnectionsPerAddress: Int, idleTimeoutMilliseconds: Int,
                headerTimeoutMilliseconds: Int, maxOutputBytes: Int, maxBufferedBytes: Int) {
        self.maxConnections = maxConnections
        self.maxConnectionsPerAddress = maxConnectionsPerAddress
        self.idleTimeoutMilliseconds = idleTimeoutMilliseconds
        self.headerTimeoutMilliseconds = headerTimeoutMilliseconds
        self.maxOutputBytes = maxOutputBytes
        self.maxBufferedBytes = maxBufferedBytes
    }
}

/// The node-wide bookkeeping behind ``ConnectionLimits``: who is connected from where, and how many bytes all
/// connections hold. Touched when a connection opens or closes and when a connection's buffered bytes cross the
/// thresholds, never per message on the common path.
package final class ConnectionGovernor: Sendable {
    /// The limits it enforces.
    package let limits: ConnectionLimits
    private let perAddress = NIOLockedValueBox<(total: Int, byAddress: [String: Int])>((0, [:]))
    private let buffered = ManagedAtomic<Int>(0)

    /// Creates the bookkeeping for `limits`.
    package init(limits: ConnectionLimits) {
        self.limits = limits
    }

    /// Admits a connection from `address` (an IP), or says which limit refuses it.
    func admit(address: String) -> String? {
        perAddress.withLockedValue { state in
            if state.total >= limits.maxConnections {
                return "too many connections: \(limits.maxConnections) open (node.limits.max_connections)"
            }
            let fromAddress = state.byAddress[address, default: 0]
            if fromAddress >= limits.maxConnectionsPerAddress {
                return "too many connections from \(address): \(limits.maxConnectionsPerAddress) open (node.limits.max_connections_per_address)"
            }
            state.total += 1
            state.byAddress[address] = fromAddress + 1
            return nil
        }
    }

    /// The key a peer's connections are counted under for `max_connections_per_address`: its IPv4 address, or the
    /// /64 prefix of its IPv6 address (one host usually holds a whole /64, and would otherwise count as 2^64
    /// addresses); an IPv4-mapped IPv6 address counts as its IPv4 address.
    package static func addressKey(_ address: SocketAddress?) -> String {
        guard let address else { return "unknown" }
        guard case .v6(let v6) = address else { return address.ipAddress ?? "\(address)" }
        let bytes = withUnsafeBytes(of: v6.address.sin6_addr) { Array($0) }
        if bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xFF, bytes[11] == 0xFF {
            return bytes[12..<16].map(String.init).joined(separator: ".")
        }
        let groups = stride(from: 0, to: 8, by: 2).map { String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16) }
        return groups.joined(separator: ":") + "::/64"
    }

    /// Forgets a connection that ``admit(address:)`` admitted.
    func release(address: String) {
        perAddress.withLockedValue { state in
            state.total -= 1
            let left = state.byAddress[address, default: 1] - 1
            if left <= 0 { state.byAddress.removeValue(forKey: address) } else { state.byAddress[address] = left }
        }
    }

    /// Open connections.
    var connectionCount: Int { perAddress.withLockedValue { $0.total } }

    /// Adds `delta` (negative to release) to the node-wide count; returns the new total.
    @discardableResult
    func charge(_ delta: Int) -> Int {
        buffered.wrappingIncrementThenLoad(by: delta, ordering: .relaxed)
    }

    /// Whether a connection now holding `held` bytes is to be shed for the node-wide budget.
    func overBudget(total: Int, held: Int) -> Bool {
        total > limits.maxBufferedBytes && held >= ConnectionLimits.chargeThreshold
    }
}
