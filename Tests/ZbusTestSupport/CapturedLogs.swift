import Logging

/// Log lines captured in memory, for tests that check what code running in the test process logs (how often, at
/// which level), as `ZbusProcess.stderr` does for a child node.
public final class CapturedLogs: Sendable {
    /// One captured line.
    public struct Entry: Sendable {
        /// Its level.
        public let level: Logger.Level
        /// Its message.
        public let message: String
        /// The logger's and the line's metadata, as text.
        public let metadata: [String: String]
    }

    private let storage = LockedValue<[Entry]>([])

    /// An empty capture.
    public init() {}

    /// Every line so far.
    public var all: [Entry] { storage.withLock { $0 } }

    /// Every line so far (``all``).
    public var entries: [Entry] { all }

    /// The warnings and errors so far, for tests that check that damage is reported.
    public var problems: [Entry] { all.filter { $0.level >= .warning } }

    /// The lines so far whose message contains `text`.
    public func lines(containing text: String) -> [Entry] { all.filter { $0.message.contains(text) } }

    /// A logger that writes here, from `level` up.
    public func logger(label: String = "zbus.test", level: Logger.Level = .trace) -> Logger {
        var logger = Logger(label: label) { _ in Handler(logs: self) }
        logger.logLevel = level
        return logger
    }

    fileprivate func append(_ entry: Entry) { storage.withLock { $0.append(entry) } }

    private struct Handler: LogHandler {
        let logs: CapturedLogs
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            var merged: [String: String] = [:]
            for (key, value) in metadata { merged[key] = "\(value)" }
            for (key, value) in event.metadata ?? [:] { merged[key] = "\(value)" }
            logs.append(Entry(level: event.level, message: "\(event.message)", metadata: merged))
        }
    }
}
