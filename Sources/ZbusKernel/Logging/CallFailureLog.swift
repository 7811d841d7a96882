import Logging
import NIOConcurrencyHelpers

/// Logs failed calls without letting their rate flood the log, for failures that come as fast as a node's callers send
/// (an adapter's legacy service down or stuck, requests that waited past `queue_timeout`) rather than at a retry
/// loop's pace, which ``RepeatedFailureLog`` is for.
///
/// Per kind of failure (`service down`, `timed out`...): the first is logged at its level (`warning` by default); the
/// next ones at `debug`, each with its own details; and one at its level again once per ``reminderInterval``, with
/// how many there were so far. A service that is down for an hour under a load of thousands of calls a second logs
/// about sixty warnings, not millions, and the first tells the operator at once. Successes are not counted: a service
/// failing one call in two still logs one line a minute.
///
/// Shared by the workers of one adapter or service, on any thread: only failures take its lock.
public final class CallFailureLog: Sendable {
    /// How often a kind of failure that keeps coming is logged at its level again.
    public let reminderInterval: Duration
    private let kinds = NIOLockedValueBox<[String: RepeatedFailureLog]>([:])

    /// Starts with no failure logged.
    public init(reminderInterval: Duration = .seconds(60)) {
        self.reminderInterval = reminderInterval
    }

    /// Logs a failed call: at `level` if it is the first of its `kind` or a reminder is due, else at `debug`.
    ///
    /// - Parameters:
    ///   - message: what failed.
    ///   - kind: which failure, from a small fixed set (logged as `reason`): the repeats of a kind are what is held back.
    ///   - level: the level of the first failure of a kind and of reminders.
    ///   - metadata: the call's details (its id, the error), logged on every line.
    ///   - logger: where to log.
    ///   - now: the time (a parameter so that tests need not wait a minute).
    /// - Returns: the level the line was logged at.
    @discardableResult
    public func failed(_ message: String, kind: String, level: Logger.Level = .warning, metadata: Logger.Metadata = [:],
                       logger: Logger, now: ContinuousClock.Instant = .now) -> Logger.Level {
        kinds.withLockedValue { kinds in
            var log = kinds[kind] ?? RepeatedFailureLog(reminderInterval: reminderInterval)
            let logged = log.failed(message, reason: kind, level: level, metadata: metadata, logger: logger, now: now)
            kinds[kind] = log
            return logged
        }
    }
}
