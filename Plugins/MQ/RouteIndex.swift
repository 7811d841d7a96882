import NIOConcurrencyHelpers
import ZbusKernel

/// Which MQs each open session produced to, so that `route` reaches only a session whose message the router could
/// have consumed (zbus 6.3 let anyone who had seen a `sender` id inject a reply into that connection).
///
/// A session's set is bounded by the MQs of the node and is noted once per session and MQ: the produce path compares
/// the MQ's mark with the last one the session noted (``Session/lastProducedMark``) and takes the lock only when it
/// changes, so a producer writing to one MQ pays one comparison per message.
final class RouteIndex: Sendable {
    private let entries = NIOLockedValueBox<[ObjectIdentifier: Set<ObjectIdentifier>]>([:])

    /// Notes that `session` produced to `queue`; called on the session's event loop.
    @inline(__always)
    func note(_ session: Session, producedTo queue: MessageQueue) {
        if session.lastProducedMark != queue.mark { noteSlowly(session, queue) }
    }

    @inline(never)
    private func noteSlowly(_ session: Session, _ queue: MessageQueue) {
        session.lastProducedMark = queue.mark
        entries.withLockedValue { _ = $0[ObjectIdentifier(session), default: []].insert(ObjectIdentifier(queue)) }
    }

    /// Whether `session` produced to `queue`.
    func produced(_ session: Session, to queue: MessageQueue) -> Bool {
        entries.withLockedValue { $0[ObjectIdentifier(session)]?.contains(ObjectIdentifier(queue)) ?? false }
    }

    /// Forgets a closed session.
    func forget(_ session: Session) {
        entries.withLockedValue { _ = $0.removeValue(forKey: ObjectIdentifier(session)) }
    }
}
