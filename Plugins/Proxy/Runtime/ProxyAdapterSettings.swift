import NIOPosix
import NIOCore
import ZbusKernel

/// The keys every adapter entry takes, whatever its kind, read from the entry's section.
///
/// ```yaml
/// - name: quotes          # the adapter's name, in logs and error replies (default: the MQ's name)
///   kind: http            # an adapter kind: http, tcp, or one a loaded module contributes
///   mq: Quotes            # the MQ it serves (created with mode MQ|RPC = 9 if missing)
///   workers: 4            # consumer connections, each handling one message at a time (default 4)
///   timeout: 5s           # per legacy call, connect included (default 10s); then the caller gets 504
///   queue_timeout: 5s     # how long a request may wait for a worker, from when the MQ accepted it, and then for a
///                         # slot (default: timeout); past it the caller gets 504 (no worker) or 503 (no slot), and
///                         # the request is never sent. A caller hears within queue_timeout + timeout (with a
///                         # remote `broker`, the wait counts from when a worker gets the request).
///   max_in_flight: 64     # legacy calls at once across the workers, and idle connections kept (default: workers);
///                         # the other workers' requests wait for a slot within queue_timeout, then 503
///   token: secret         # the MQ's access token (optional)
/// ```
///
/// Custom adapter factories may read these too (for example ``timeout`` as a connect timeout).
public struct ProxyAdapterSettings: Sendable {
    /// The keys the runtime reads in every adapter entry.
    public static let keys = ["name", "kind", "mq", "workers", "timeout", "queue_timeout", "max_in_flight", "token"]

    /// The adapter's name.
    public let name: String
    /// The adapter kind.
    public let kind: String
    /// The MQ served.
    public let mq: String
    /// Consumer connections.
    public let workers: Int
    /// The limit of one legacy call.
    public let timeout: Duration
    /// The limit of a request's wait before its call: for a worker, from when the MQ accepted it, then for a slot.
    public let queueTimeout: Duration
    /// Legacy calls at once.
    public let maxInFlight: Int
    /// The MQ's access token.
    public let token: String?

    /// Reads the runtime's keys from an adapter entry.
    ///
    /// - Throws: ``ConfigError`` for a missing `kind` or `mq`, or a bad number or duration.
    public init(_ config: ConfigSection) throws(ConfigError) {
        guard let kind = try config.string("kind") else {
            throw config.value.error("missing key 'kind': the adapter kind (http, tcp, or one a loaded module contributes)")
        }
        guard let mq = try config.string("mq"), !mq.isEmpty else {
            throw (config["mq"] ?? config.value).error("missing key 'mq': the MQ whose messages this adapter serves")
        }
        self.kind = kind
        self.mq = mq
        name = try config.string("name") ?? mq
        workers = try config.int("workers", in: 1...1024) ?? 4
        timeout = .milliseconds(try config.milliseconds("timeout", in: 1...3_600_000) ?? 10_000)
        queueTimeout = try config.milliseconds("queue_timeout", in: 1...3_600_000).map { .milliseconds($0) } ?? timeout
        maxInFlight = try config.int("max_in_flight", in: 1...65_536) ?? workers
        token = try config.string("token")
    }
}

/// The event loops that adapters' legacy connections run on (NIO's shared group: adapters are built before the node
/// hands out its own loops).
enum ProxyEventLoops {
    static var group: any EventLoopGroup { MultiThreadedEventLoopGroup.singleton }
}
