/// The mode bits of an MQ, as `create_mq` takes them in `mq_mode`.
public struct QueueMode: OptionSet, Sendable, Hashable {
    /// The bits, as `mq_mode` carries them.
    public let rawValue: Int

    /// Creates a mode from its bits.
    public init(rawValue: Int) { self.rawValue = rawValue }

    /// A plain queue: each message goes to one of the competing consumers.
    public static let mq = QueueMode(rawValue: 1)
    /// Publish/subscribe: each message goes to every subscriber whose `topic` matches.
    public static let pubSub = QueueMode(rawValue: 2)
    /// Messages kept in memory only.
    public static let memory = QueueMode(rawValue: 4)
    /// An MQ-RPC queue: memory only, and a produce fails fast when no consumer is connected.
    public static let rpc = QueueMode(rawValue: 8)
}

/// What `query_mq` says about one MQ.
public struct MQInfo: Sendable, Decodable, Equatable {
    /// One consumer as the node sees it.
    public struct ConsumerInfo: Sendable, Decodable, Equatable {
        /// The consumer's `ip:port` (or `in-process`).
        public var remoteAddr: String
        /// Its session state (`CONNECTED`).
        public var status: String?
        /// Its pub/sub topics.
        public var topics: [String]?
    }

    /// The MQ's name.
    public var name: String
    /// Its mode bits.
    public var mode: Int
    /// Who created it (`ip:port`).
    public var creator: String?
    /// Connected sessions that consume from it.
    public var consumerCount: Int
    /// Messages waiting for a consumer.
    public var unconsumedMsgCount: Int64
    /// Messages handed to consumers and not yet acknowledged (a zbus for Swift addition; `nil` from older nodes).
    public var inFlightMsgCount: Int64?
    /// When it last changed (epoch milliseconds).
    public var lastUpdateTime: Int64?
    /// The consumers parked on it (MQ) or subscribed to it (pub/sub).
    public var consumerInfoList: [ConsumerInfo]?

    /// The mode as option bits.
    public var queueMode: QueueMode { QueueMode(rawValue: mode) }
}
