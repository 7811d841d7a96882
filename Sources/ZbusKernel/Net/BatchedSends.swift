/// Sends to several sessions from one event loop, each session flushed once when the batch finishes (see
/// ``Session/beginSendBatch()``). Sessions of other loops are sent to as usual.
package struct BatchedSends {
    private var held: [Session] = []
    private var heldIds: Set<ObjectIdentifier> = []

    /// An empty batch.
    package init() {}

    /// Sends `outgoing` to `session`, holding the session's flush until ``finish()`` when it lives on this loop.
    package mutating func send(_ outgoing: Outgoing, to session: Session) {
        if held.last !== session, !isHeld(session), session.beginSendBatch() {
            held.append(session)
            if held.count > 8 { heldIds.insert(ObjectIdentifier(session)) }
        }
        session.send(outgoing)
    }

    private mutating func isHeld(_ session: Session) -> Bool {
        if held.count <= 8 { return held.contains { $0 === session } }
        if heldIds.count < held.count { heldIds = Set(held.map(ObjectIdentifier.init)) }
        return heldIds.contains(ObjectIdentifier(session))
    }

    /// Flushes every held session.
    package func finish() {
        for session in held { session.endSendBatch() }
    }
}
