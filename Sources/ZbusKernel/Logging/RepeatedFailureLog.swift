import Logging

/// Logs a failure that repeats (a consume the node refuses, retried every second) without flooding the log, for a
/// loop that retries:
///
/// - the first failure of a streak is logged at its level (`error` by default), with its reason;
/// - the same failure again is logged at `debug`, and at its level again once per ``reminderInterval`` (a minute by
///   default) with how many times it repeated, so that a stuck worker stays visible in a log kept at `info`;
/// - a failure with another reason starts a new streak (logged at its level);
/// - the first success after failures is logged at `notice` (``succeeded(_:metadata:logger:)``).
///
/// A value owned by one loop or task, not shared.
public struct RepeatedFailureLog: Sendable {
    /// How often a failure that keeps repeating is logged at its level again.
    public let reminderInterval: Duration
    /// The reason of the failure being repeated; `nil` while things work.
    public private(set) var reason: String?
    /// How many times the failure repeated after its first time.
    public private(set) var repeats = 0
    private var lastLoud: ContinuousClock.Instant?

    /// Starts with no failure.
    ///
    /// - Parameter reminderInterval: how often a repeated failure is logged at its level again (a minute by default).
    public init(reminderInterval: Duration = .seconds(60)) {
        self.reminderInterval = reminderInterval
    }

    /// Whether the last outcome was a failure (inlinable: loops ask it on every success).
    @inlinable public var isFailing: Bool { reason != nil }

    /// Logs a failure: at `level` if it starts a streak (or `reason` changed) or a reminder is due, else at `debug`.
    ///
    /// - Parameters:
    ///   - message: what failed and what happens next (`... ; retrying`).
    ///   - reason: why, as the node or the error said it; logged as `reason`, and compared to tell a repeat.
    ///   - level: the level of the first failure of a streak and of reminders.
    ///   - metadata: more to log.
    ///   - logger: where to log.
    ///   - now: the time (a parameter so that tests need not wait a minute).
    /// - Returns: the level the line was logged at.
    @discardableResult
    public mutating func failed(_ message: String, reason: String, level: Logger.Level = .error, metadata: Logger.Metadata = [:],
                                logger: Logger, now: ContinuousClock.Instant = .now) -> Logger.Level {
        var metadata = metadata
        metadata["reason"] = "\(reason)"
        guard reason == self.reason, let lastLoud else {
            self.reason = reason
            repeats = 0
            lastLoud = now
            logger.log(level: level, "\(message)", metadata: metadata)
            return level
        }
        repeats += 1
        metadata["repeated"] = "\(repeats)"
        guard lastLoud.duration(to: now) >= reminderInterval else {
            logger.debug("\(message)", metadata: metadata)
            return .debug
        }
        self.lastLoud = now
        logger.log(level: level, "\(message)", metadata: metadata)
        return level
    }

    /// Ends a streak of failures: logs `message` at `notice` (with the last reason and how many failures there were)
    /// if failures came before, nothing otherwise.
    ///
    /// - Returns: whether a streak ended (and a line was logged).
    @discardableResult
    public mutating func succeeded(_ message: String, metadata: Logger.Metadata = [:], logger: Logger) -> Bool {
        guard let reason else { return false }
        var metadata = metadata
        metadata["after"] = "\(repeats + 1) failures"
        metadata["last_reason"] = "\(reason)"
        logger.notice("\(message)", metadata: metadata)
        self.reason = nil
        repeats = 0
        lastLoud = nil
        return true
    }
}
