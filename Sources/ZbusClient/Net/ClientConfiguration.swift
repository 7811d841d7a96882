import NIOCore

/// How a ``MessageClient`` connects, waits and keeps its connection alive.
public struct ClientConfiguration: Sendable {
    /// How long a request waits for a connection (including reconnect attempts) before it fails with
    /// ``ZbusClientError/connectFailed(address:reason:)``.
    public var connectTimeout: Duration = .seconds(5)
    /// How long a request waits for its reply once written, unless the call gives its own timeout.
    public var requestTimeout: Duration = .seconds(10)
    /// How often a `heartbeat` is sent on a connection that wrote nothing else meanwhile; `nil` sends none.
    /// (zbus 6.3.1 clients sent one every 300 s; the node ignores them, they only keep the path warm and reveal a dead
    /// peer to TCP.)
    public var heartbeatInterval: Duration? = .seconds(60)
    /// The pauses between reconnect attempts: from 50 ms, doubling after each failed attempt, up to 2 s.
    public var reconnectBackoff = Backoff(initial: .milliseconds(50), maximum: .seconds(2))
    /// The pause before the first reconnect attempt (``reconnectBackoff``'s initial pause).
    public var initialReconnectDelay: Duration {
        get { reconnectBackoff.initial }
        set { reconnectBackoff = Backoff(initial: newValue, multiplier: reconnectBackoff.multiplier, maximum: reconnectBackoff.maximum, jitter: reconnectBackoff.jitter) }
    }
    /// The longest pause between two reconnect attempts (``reconnectBackoff``'s maximum).
    public var maximumReconnectDelay: Duration {
        get { reconnectBackoff.maximum }
        set { reconnectBackoff = Backoff(initial: reconnectBackoff.initial, multiplier: reconnectBackoff.multiplier, maximum: newValue, jitter: reconnectBackoff.jitter) }
    }
    /// Whether a connection that dropped is re-established in the background (with backoff) rather than at the next
    /// request.
    public var reconnectEagerly = true
    /// Limits on the messages the client accepts from the node.
    public var limits = MessageLimits(maxHeaderBytes: 1 << 20, maxBodyBytes: 1 << 30)
    /// Connects over TLS with these trust roots, client certificate and name checks (to a node's `node.tls.listen`
    /// port); `nil` (the default) connects in plain TCP. It applies to every connection the client opens, the HA
    /// client's tracker and broker connections included.
    public var tls: ClientTLS?

    /// The defaults: connect within 5 s, replies within 10 s, a heartbeat every idle minute, reconnect from 50 ms to 2 s.
    public init() {}
}

extension Duration {
    /// The duration in whole milliseconds (rounded up, at least 0).
    var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        let millis = seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
        return max(0, millis)
    }
}
