/// The mode bits of an MQ (zbus 6 `MqMode`).
public struct MQMode: OptionSet, Sendable, Hashable, Codable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }

    /// Plain point-to-point queue with competing consumers.
    public static let mq = MQMode(rawValue: 1)
    /// Publish/subscribe by topic.
    public static let pubSub = MQMode(rawValue: 2)
    /// Messages kept in memory only.
    public static let memory = MQMode(rawValue: 4)
    /// Memory queue for MQ-RPC: produce fails fast with no consumer, URL-RPC rewrite applies.
    public static let rpc = MQMode(rawValue: 8)

    /// Whether messages are kept in memory rather than in the durable store.
    public var isMemoryOnly: Bool { contains(.memory) || contains(.rpc) || contains(.pubSub) }
}

/// The persisted definition of an MQ: what `create_mq` said, plus links. Survives every restart.
struct MQDefinition: Codable, Sendable, Equatable {
    var name: String
    var mode: Int
    var accessToken: String
    var creator: String
    var masterMq: String?
    var maxLength: Int64
    var createdAt: Int64

    var modeBits: MQMode { MQMode(rawValue: mode) }
}
