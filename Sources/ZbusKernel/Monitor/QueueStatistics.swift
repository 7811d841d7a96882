/// One MQ as the monitor page, `/metrics` and the operator tools show it: a snapshot of its counts, read without
/// stopping the MQ.
///
/// The counters (`produced`, `consumed`, `redelivered`) count since the node started (or since the MQ was created,
/// if later); the rates are messages per second over the last sampling second.
public struct QueueStatistics: Sendable, Equatable {
    /// The MQ's name.
    public var name: String
    /// The zbus 6 mode bits (1 MQ, 2 PubSub, 4 Memory, 8 RPC).
    public var mode: Int
    /// The mode in words (`MQ`, `PubSub, Memory`).
    public var modeDescription: String
    /// Messages waiting for a consumer (`unconsumedMsgCount`).
    public var depth: Int64
    /// Consumers connected that have consumed (`consumerCount`).
    public var consumers: Int
    /// Messages handed to consumers and not yet acknowledged.
    public var inFlight: Int64
    /// Messages stored (or, for pub/sub, published) since the node started.
    public var produced: UInt64
    /// Messages handed to consumers since the node started, redeliveries included.
    public var consumed: UInt64
    /// Messages taken back from consumers whose connection closed, to be delivered again.
    public var redelivered: UInt64
    /// Messages produced per second, over the last sampling interval.
    public var produceRate: Double
    /// Messages consumed per second, over the last sampling interval.
    public var consumeRate: Double
    /// When a message was last produced or the MQ was created, in milliseconds since 1970.
    public var lastActivity: Int64
    /// False for an MQ of the store not opened yet (opened on first use): its counts are not known and read 0.
    public var isOpen: Bool

    /// Creates a snapshot.
    public init(name: String, mode: Int, modeDescription: String, depth: Int64, consumers: Int, inFlight: Int64,
                produced: UInt64, consumed: UInt64, redelivered: UInt64, produceRate: Double, consumeRate: Double,
                lastActivity: Int64, isOpen: Bool) {
        self.name = name
        self.mode = mode
        self.modeDescription = modeDescription
        self.depth = depth
        self.consumers = consumers
        self.inFlight = inFlight
        self.produced = produced
        self.consumed = consumed
        self.redelivered = redelivered
        self.produceRate = produceRate
        self.consumeRate = consumeRate
        self.lastActivity = lastActivity
        self.isOpen = isOpen
    }
}

/// One consumer of an MQ, as its detail view lists it.
public struct QueueConsumerStatistics: Sendable, Equatable {
    /// The consumer's address (`ip:port`).
    public var remoteAddress: String
    /// Its pub/sub topics (empty for a point-to-point MQ).
    public var topics: [String]
    /// Messages it holds, not yet acknowledged.
    public var inFlight: Int
    /// Whether a consume of it is parked, waiting for a message.
    public var isWaiting: Bool

    /// Creates a consumer entry.
    public init(remoteAddress: String, topics: [String], inFlight: Int, isWaiting: Bool) {
        self.remoteAddress = remoteAddress
        self.topics = topics
        self.inFlight = inFlight
        self.isWaiting = isWaiting
    }
}

/// Everything the detail view of one MQ shows.
public struct QueueDetail: Sendable, Equatable {
    /// Its counts.
    public var statistics: QueueStatistics
    /// Its consumers, by address.
    public var consumers: [QueueConsumerStatistics]
    /// How long the oldest message waiting for a consumer has waited, in milliseconds (to the sampling second), or
    /// `nil` when nothing waits or the MQ does not keep the order (pub/sub).
    public var oldestWaitingAge: Int64?
    /// The topics its subscribers asked for (pub/sub), sorted.
    public var topics: [String]
    /// Who created it (`ip:port`).
    public var creator: String
    /// The MQ it copies from, if it is a slave.
    public var masterMq: String?

    /// Creates a detail view.
    public init(statistics: QueueStatistics, consumers: [QueueConsumerStatistics], oldestWaitingAge: Int64?,
                topics: [String], creator: String, masterMq: String?) {
        self.statistics = statistics
        self.consumers = consumers
        self.oldestWaitingAge = oldestWaitingAge
        self.topics = topics
        self.creator = creator
        self.masterMq = masterMq
    }
}

/// What a module holding MQs tells the monitor (the `mq` module contributes one to ``ExtensionPoint/queueStatistics``).
///
/// Reading must not slow the MQs down: implementations keep plain counters on each MQ's own state and copy them out
/// here, under the lock each MQ already has, rather than counting in shared atomics per message.
public protocol QueueStatisticsSource: Sendable {
    /// Every MQ, sorted by name.
    func queueStatistics() -> [QueueStatistics]
    /// One MQ in detail, or `nil` when there is no such MQ.
    func queueDetail(named name: String) -> QueueDetail?
    /// The bytes the store's files take on disk. It reads the file system: call it off the event loops.
    func storeBytes() -> Int64
    /// Whether a caller presenting `token` may see the MQ `name`'s counts (its `access_token`, or a permission of the
    /// node's `auth` section on it).
    func mayRead(queue name: String, token: String?) -> Bool
}

extension QueueStatisticsSource {
    /// Every MQ is visible (a source without access tokens).
    public func mayRead(queue name: String, token: String?) -> Bool { true }
}

extension ExtensionPoint where Value == any QueueStatisticsSource {
    /// The node's MQs, for the monitor page and `/metrics`. Declared by the kernel, so that the module holding the
    /// MQs and the module showing them need not know each other; one module per node holds them.
    public static var queueStatistics: ExtensionPoint {
        .exclusive("monitor.queue-statistics", noun: "the MQ statistics (the MQs the monitor shows)", verb: "provides")
    }
}
