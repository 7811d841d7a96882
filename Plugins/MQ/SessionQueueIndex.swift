import NIOConcurrencyHelpers
import ZbusKernel

/// Which MQs each open session has consumed from, so that a closing connection visits those MQs only.
///
/// Visiting every MQ under its lock on every close made connection churn cost as much as the MQ table is large: with
/// thousands of MQs, a client opening and closing connections kept a core busy. An entry is added when a session
/// first consumes from an MQ (once per session and MQ, not per consume) and taken when the session closes.
final class SessionQueueIndex: Sendable {
    private let entries = NIOLockedValueBox<[ObjectIdentifier: [MessageQueue]]>([:])
    /// Told of each new consumer (tracker reporting): this is the one place a consumer arrives, once per session and
    /// MQ, so the consume path itself pays nothing for it.
    private let observers: TrackedEntryObservers?

    init(observers: TrackedEntryObservers? = nil) {
        self.observers = observers
    }

    /// Notes that `session` now has a consumer in `queue`.
    func note(_ session: Session, consumesFrom queue: MessageQueue) {
        entries.withLockedValue { $0[ObjectIdentifier(session), default: []].append(queue) }
        observers?.notify(.changed(queue.name))
    }

    /// The MQs `session` consumed from (kept).
    func queues(of session: Session) -> [MessageQueue] {
        entries.withLockedValue { $0[ObjectIdentifier(session)] ?? [] }
    }

    /// The MQs `session` consumed from, forgotten here.
    func take(_ session: Session) -> [MessageQueue] {
        entries.withLockedValue { $0.removeValue(forKey: ObjectIdentifier(session)) ?? [] }
    }
}
