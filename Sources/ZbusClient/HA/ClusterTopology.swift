/// Which brokers there are and which MQs each hosts: the HA broker's merged view of every tracker's table.
///
/// A value: ``HaBroker/topology`` returns the current one, ``HaBroker/topologyUpdates()`` each new one.
public struct ClusterTopology: Sendable, Equatable, CustomStringConvertible {
    /// Broker address → entry id → entry. A broker that joined and hosts nothing yet has an empty table.
    public private(set) var servers: [String: [String: TrackerEntry]]

    /// An empty topology: no broker known (yet).
    public init() { servers = [:] }

    init(servers: [String: [String: TrackerEntry]]) { self.servers = servers }

    /// Every known broker, sorted.
    public var serverAddresses: [String] { servers.keys.sorted() }

    /// The entries of `mq`, one per broker hosting it, sorted by broker.
    public func entries(of mq: String) -> [TrackerEntry] {
        servers.values.compactMap { $0[mq] }.sorted { $0.server < $1.server }
    }

    /// The brokers hosting `mq`, sorted.
    public func servers(hosting mq: String) -> [String] { entries(of: mq).map(\.server) }

    /// The mode of `mq` as its brokers report it (the first broker's, in address order); `nil` when none hosts it.
    public func mode(of mq: String) -> QueueMode? { entries(of: mq).first.map(\.queueMode) }

    /// Whether no broker is known.
    public var isEmpty: Bool { servers.isEmpty }

    /// One line per broker: `host:port: MQ(unconsumed/consumers), ...`.
    public var description: String {
        if servers.isEmpty { return "no broker known" }
        return serverAddresses.map { server in
            let entries = servers[server, default: [:]].values.sorted { $0.id < $1.id }
                .map { "\($0.id)(\($0.unconsumedCount)/\($0.consumerCount))" }
            return "\(server): " + (entries.isEmpty ? "-" : entries.joined(separator: ", "))
        }.joined(separator: "; ")
    }
}
