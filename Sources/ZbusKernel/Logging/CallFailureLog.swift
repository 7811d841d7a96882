import Logging
import NIOConcurrencyHelpers

/// Logs failed calls without letting their rate flood the log, for failures that come as fast as a node's callers send
/// (an adapter's legacy service down or stuck, requests that waited past `queue_timeout`) rather than at a retry
/// loop's pace, which ``RepeatedFailureLog`` is for.
///
/// Per kind of failure (`service down`, `timed out`...), at most one line a ``reminderInterval`` is logged at its
/// level (`warning` by default), with how many of that kind came since the previous one (`repeated`); every other
/// failure is logged at `debug`, each with its own details. A service that is down for an hour under a load of
/// thousands of calls a second logs about sixty warnings, not millions, and the first failure after a quiet minute
/// tells the operator at once.
///
/// Shared by the workers of one adapter or service, on any thread: only failures take its lock, and only to decide
/// the level (the line is written after it is released).
public final class CallFailureLog: Sendable {
    /// The least time between two lines of one kind at their level.
    public let reminderInterval: Duration
    private let kinds = NIOLockedValueBox<[String: Kind]>([:])

    private struct Kind {
        var lastLoud: ContinuousClock.Instant
        /// Failures of this kind logged at `debug` since `lastLoud`.
        var heldBack = 0
    }

    /// Starts with no failure logged.
    public init(reminderInterval: Duration = .seconds(60)) {
        self.reminderInterval = reminderInterval
    }

    /// Logs a failed call: at `level` if none of its `kind` was logged at its level within ``reminderInterval``, else
    /// at `debug`.
    ///
    /// - Parameters:
    ///   - message: what failed.
    ///   - kind: which failure, from a small fixed set (logged as `reason`): the repeats of a kind are what is held back.
    ///   - level: the level of a line that is not held back.
    ///   - metadata: the call's details (its id, the error), logged on every line.
    ///   - logger: where to log.
    ///   - now: the time (a parameter so that tests need not wait a minute).
    /// - Returns: the level the line was logged at.
    @discardableResult
    public func failed(_ message: String, kind: String, level: Logger.Level = .warning, metadata: Logger.Metadata = [:],
                       logger: Logger, now: ContinuousClock.Instant = .now) -> Logger.Level {
        let heldBack: Int? = kinds.withLockedValue { kinds in
            if var seen = kinds[kind], seen.lastLoud.duration(to: now) < reminderInterval {
                seen.heldBack += 1
                kinds[kind] = seen
                return nil
            }
            let heldBack = kinds[kind]?.heldBack ?? 0
            kinds[kind] = Kind(lastLoud: now)
            return heldBack
        }
        var metadata = metadata
        metadata["reason"] = "\(kind)"
        guard let heldBack else {
            logger.debug("\(message)", metadata: metadata)
            return .debug
        }
        if heldBack > 0 { metadata["repeated"] = "\(heldBack)" }
        logger.log(level: level, "\(message)", metadata: metadata)
        return level
    }
}
