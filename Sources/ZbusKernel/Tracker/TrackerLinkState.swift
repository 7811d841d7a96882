/// The life of one reporting connection to a tracker, as a value type: each event returns what to do next.
///
/// A connection that drops is retried after the first pause of the schedule; each failed attempt lengthens the pause
/// (``Backoff``) up to its maximum. Only a connection that lasted (``lasted()``, one refresh interval) resets it: a
/// tracker that accepts and closes at once (full, or shutting down) is otherwise redialled ten times a second by
/// every broker. Once stopped, nothing reconnects.
struct TrackerLinkState: Sendable, Equatable {
    enum Phase: Sendable, Equatable {
        case idle
        case connecting
        case connected
        case waiting
        case stopped
    }

    enum Action: Sendable, Equatable {
        case none
        case connect
        /// Connected: send `server_join` and every entry, start refreshing.
        case announce
        /// Schedule a reconnect after this pause.
        case retry(after: Duration, attempt: Int)
        /// Send `server_leave` and close.
        case leave
        /// A connection came up after the stop: close it without a word.
        case close
    }

    private(set) var phase: Phase = .idle
    /// Failed attempts since the last success.
    private(set) var failures = 0
    let backoff: Backoff

    init(backoff: Backoff) {
        self.backoff = backoff
    }

    mutating func start() -> Action {
        guard phase == .idle else { return .none }
        phase = .connecting
        return .connect
    }

    mutating func connected() -> Action {
        guard phase == .connecting else { return phase == .stopped ? .close : .none }
        phase = .connected
        return .announce
    }

    /// The connection has been up for a refresh interval: the next drop is retried after the first pause again.
    mutating func lasted() {
        if phase == .connected { failures = 0 }
    }

    mutating func connectFailed() -> Action {
        guard phase == .connecting else { return .none }
        phase = .waiting
        let attempt = failures
        failures += 1
        return .retry(after: backoff.delay(attempt: attempt), attempt: attempt)
    }

    mutating func disconnected() -> Action {
        guard phase == .connected else { return .none }
        phase = .waiting
        let attempt = failures
        failures += 1
        return .retry(after: backoff.delay(attempt: attempt), attempt: attempt)
    }

    mutating func retryDue() -> Action {
        guard phase == .waiting else { return .none }
        phase = .connecting
        return .connect
    }

    mutating func stop() -> Action {
        let wasConnected = phase == .connected
        phase = .stopped
        return wasConnected ? .leave : .none
    }
}
