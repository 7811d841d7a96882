/// Sends to several sessions from one event loop, each session flushed once when the batch finishes (see
/// ``Session/beginSendBatch()``). Sessions of other loops are sent to as usual.
public struct BatchedSends {
    private var held: [Session] = []

    /// An empty batch with room for `capacity` sessions, so that it does not grow while it is filled (it is filled
    /// once per store write, with a session per acknowledged message at most).
    public init(capacity: Int) {
        held.reserveCapacity(capacity)
    }

    /// Sends `outgoing` to `session`, holding the session's flush until ``finish()`` when it lives on this loop.
    /// A session already held (by this batch or by a read batch) answers `false` to `beginSendBatch()`, so it is held
    /// once and ended by whoever began it.
    public mutating func send(_ outgoing: Outgoing, to session: Session) {
        if session.beginSendBatch() { held.append(session) }
        session.send(outgoing)
    }

    /// Flushes every held session.
    public func finish() {
        for session in held { session.endSendBatch() }
    }
}
