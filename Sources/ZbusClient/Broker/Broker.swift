import Logging
import NIOCore
import NIOPosix

/// The client's view of zbus: where requests go, with a pool of connections.
///
/// ``Producer``, ``Consumer`` and ``MqAdmin`` work on any broker; which one is a matter of deployment, not code:
///
/// ```swift
/// let broker = try ZbusBroker.connect("127.0.0.1:15555")   // a node over TCP (SingleBroker)
/// let local = InProcessBroker(node: node)                   // a node embedded in this process, no socket
/// ```
///
/// A broker is a heavy, shared object (like a database pool): create one per application and ``close()`` it at the end.
public protocol Broker: Sendable {
    /// Where the broker sends (for messages and errors).
    var address: String { get }

    /// Sends `request` on one of the pooled connections and waits for the message carrying its `id`.
    ///
    /// - Parameters:
    ///   - request: the message.
    ///   - timeout: how long to wait for the reply; the client's request timeout by default.
    /// - Throws: ``ZbusClientError`` or `CancellationError`, as ``MessageClient/send(_:timeout:)``.
    nonisolated(nonsending) func send(_ request: Message, timeout: Duration?) async throws -> Message

    /// Sends `message`, which gets no reply, on one of the pooled connections.
    ///
    /// - Throws: ``ZbusClientError`` when it could not be written.
    nonisolated(nonsending) func sendOneWay(_ message: Message) async throws

    /// One of the pooled connections, for a sequence of requests that must leave in order (the node handles each
    /// connection's messages in the order sent).
    func pooledClient() -> MessageClient

    /// Opens a dedicated connection, not shared with the pool. A consumer needs one: the node acknowledges a consumed
    /// message when the *same connection* consumes again.
    ///
    /// - Parameter onPush: called with messages that answer no request.
    func makeClient(onPush: (@Sendable (Message) -> Void)?) -> MessageClient

    /// Closes the pooled connections; requests waiting on them fail with ``ZbusClientError/clientClosed(address:)``.
    func close() async
}

extension Broker {
    /// Sends `request` and waits for its reply, with the client's default timeout.
    public nonisolated(nonsending) func send(_ request: Message) async throws -> Message {
        try await send(request, timeout: nil)
    }
}

/// Builds brokers from address strings, as `new ZbusBroker(address)` did for the Java clients.
public enum ZbusBroker {
    /// The broker for `address`.
    ///
    /// - Parameters:
    ///   - address: `HOST:PORT` for one node (a ``SingleBroker``), or a tracker list (`h1:16666;h2:16667`, also
    ///     with `,` or spaces, or one tracker in brackets: `[h1:16666]`) for a cluster (an ``HaBroker``).
    ///   - configuration: the settings of every connection.
    ///   - poolSize: connections shared by requests (requests are pipelined on them, spread round-robin); for a
    ///     cluster, per broker.
    ///   - haConfiguration: for a tracker list, how the broker follows the trackers and fails over.
    /// - Throws: ``ZbusClientError/invalidAddress(_:reason:)``.
    public static func connect(_ address: String, configuration: ClientConfiguration = ClientConfiguration(),
                               poolSize: Int = 4, haConfiguration: HaConfiguration = HaConfiguration(),
                               logger: Logger = Logger(label: "zbus.client")) throws(ZbusClientError) -> any Broker {
        switch try BrokerAddress(parsing: address) {
        case .single(let node):
            return SingleBroker(address: node, configuration: configuration, poolSize: poolSize, logger: logger)
        case .trackers(let trackers):
            var haConfiguration = haConfiguration
            haConfiguration.poolSize = max(1, min(poolSize, haConfiguration.poolSize))
            return HaBroker(trackers: trackers, configuration: configuration, haConfiguration: haConfiguration, logger: logger)
        }
    }
}

/// A fixed set of clients that requests are spread over, round-robin. Each client pipelines, so the pool never
/// blocks a request waiting for a free connection.
///
/// A caller that runs on the event loop of some of the clients (see ``EventLoopTaskExecutor``) is given one of those,
/// so its requests need no thread hop.
final class ClientPool: Sendable {
    let clients: [MessageClient]
    private let next = ManagedAtomicCounter()
    /// The clients of each event loop, by the loop's identity.
    private let byEventLoop: [ObjectIdentifier: [MessageClient]]

    init(size: Int, makeClient: () -> MessageClient) {
        clients = (0..<max(1, size)).map { _ in makeClient() }
        byEventLoop = Dictionary(grouping: clients) { ObjectIdentifier($0.eventLoop) }
    }

    func pick() -> MessageClient {
        let turn = next.increment()
        if byEventLoop.count > 1, let current = MultiThreadedEventLoopGroup.currentEventLoop,
            let local = byEventLoop[ObjectIdentifier(current)]
        {
            return local[Int(turn % UInt64(local.count))]
        }
        return clients[Int(turn % UInt64(clients.count))]
    }

    func close() async {
        await withTaskGroup(of: Void.self) { group in
            for client in clients { group.addTask { await client.close() } }
        }
    }
}
