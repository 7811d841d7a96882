import NIOConcurrencyHelpers

/// One thing a node hosts that trackers should know about: an MQ (or a direct-RPC service), with its load.
public struct TrackedEntry: Sendable, Hashable {
    /// The entry id: the MQ name.
    public var name: String
    /// The mode bits (`mq_mode`).
    public var mode: Int
    /// When it last changed, in milliseconds since 1970.
    public var lastUpdateTime: Int64
    /// Messages waiting.
    public var unconsumedCount: Int64
    /// Consumers connected.
    public var consumerCount: Int

    /// Creates an entry.
    public init(name: String, mode: Int, lastUpdateTime: Int64, unconsumedCount: Int64, consumerCount: Int) {
        self.name = name
        self.mode = mode
        self.lastUpdateTime = lastUpdateTime
        self.unconsumedCount = unconsumedCount
        self.consumerCount = consumerCount
    }

    /// The wire row for a tracker, hosted by `server`.
    public func trackerEntry(server: String) -> TrackerEntry {
        TrackerEntry(id: name, server: server, mode: mode, lastUpdateTime: lastUpdateTime, unconsumedCount: unconsumedCount,
                     consumerCount: consumerCount)
    }
}

/// What changed about a tracked entry.
public enum TrackedEntryChange: Sendable, Hashable {
    /// Created, or its consumers changed: report it now rather than at the next refresh.
    case changed(String)
    /// Removed: trackers should forget it.
    case removed(String)
}

/// A module's entries, as the node's tracker reporting reads them (contributed to ``ExtensionPoint/trackedEntries``).
///
/// Reporting reads ``trackedEntries()`` when it connects and at every refresh, and ``trackedEntry(named:)`` after a
/// change; it hears of changes through the observer it registers once with ``observeTrackedEntries(_:)``. A source
/// calls observers on creation, removal and consumer changes only, never per message.
public protocol TrackedEntrySource: Sendable {
    /// Every entry now.
    func trackedEntries() -> [TrackedEntry]
    /// The entry called `name`, or `nil` when there is none (any more).
    func trackedEntry(named name: String) -> TrackedEntry?
    /// Registers `observer`, called (from any thread, possibly with the source's locks held: it must only hand the
    /// change on, never call back into the source) on every change.
    func observeTrackedEntries(_ observer: @escaping @Sendable (TrackedEntryChange) -> Void)
}

extension ExtensionPoint where Value == any TrackedEntrySource {
    /// The sources of what a node reports to its trackers (`trackers:` in the node file), by name. The `mq` module
    /// contributes its MQs.
    public static var trackedEntries: ExtensionPoint {
        .named("kernel.tracked-entries", noun: "tracked entry source")
    }
}

/// The observers of a ``TrackedEntrySource``: a source keeps one and calls ``notify(_:)`` on every change.
public final class TrackedEntryObservers: Sendable {
    private let observers = NIOLockedValueBox<[@Sendable (TrackedEntryChange) -> Void]>([])

    /// Creates an empty list.
    public init() {}

    /// Adds `observer`.
    public func add(_ observer: @escaping @Sendable (TrackedEntryChange) -> Void) {
        observers.withLockedValue { $0.append(observer) }
    }

    /// Tells every observer about `change`.
    public func notify(_ change: TrackedEntryChange) {
        let current = observers.withLockedValue { $0 }
        for observer in current { observer(change) }
    }
}
