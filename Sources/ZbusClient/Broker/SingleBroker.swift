import Atomics
import Logging
import NIOCore

/// A broker for one node over TCP, with a pool of pipelined connections.
public final class SingleBroker: Broker {
    /// The node's `HOST:PORT`.
    public let address: String
    /// The settings of every connection.
    public let configuration: ClientConfiguration
    private let host: HostAndPort
    private let pool: ClientPool
    private let eventLoopGroup: (any EventLoopGroup)?
    private let logger: Logger

    /// Creates a broker for the node at `address`; connections open at the first request.
    ///
    /// - Parameters:
    ///   - address: the node.
    ///   - configuration: the settings of every connection.
    ///   - poolSize: how many connections requests are spread over.
    ///   - eventLoopGroup: where the connections run; NIO's shared singleton group by default.
    ///   - logger: where connection events are logged.
    public init(address: HostAndPort, configuration: ClientConfiguration = ClientConfiguration(), poolSize: Int = 4,
                eventLoopGroup: (any EventLoopGroup)? = nil, logger: Logger = Logger(label: "zbus.client")) {
        self.address = address.description
        self.host = address
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
        let connector = SocketConnector(host: address.host, port: address.port)
        pool = ClientPool(size: poolSize) {
            MessageClient(connector: connector, configuration: configuration, eventLoopGroup: eventLoopGroup, logger: logger, onPush: nil)
        }
    }

    /// Creates a broker for `address` (`HOST:PORT`).
    ///
    /// - Throws: ``ZbusClientError/invalidAddress(_:reason:)``.
    public convenience init(address: String, configuration: ClientConfiguration = ClientConfiguration(), poolSize: Int = 4,
                            eventLoopGroup: (any EventLoopGroup)? = nil, logger: Logger = Logger(label: "zbus.client")) throws(ZbusClientError) {
        self.init(address: try BrokerAddress.parseSingle(address), configuration: configuration, poolSize: poolSize,
                  eventLoopGroup: eventLoopGroup, logger: logger)
    }

    /// Sends `request` on a pooled connection and waits for its reply (see ``Broker/send(_:timeout:)``).
    public nonisolated(nonsending) func send(_ request: Message, timeout: Duration?) async throws -> Message {
        try await pool.pick().send(request, timeout: timeout)
    }

    /// Sends `message`, which gets no reply, on a pooled connection.
    public nonisolated(nonsending) func sendOneWay(_ message: Message) async throws {
        try await pool.pick().sendOneWay(message)
    }

    /// One of the pooled connections.
    public func pooledClient() -> MessageClient { pool.pick() }

    /// A new connection of its own, not shared with the pool.
    public func makeClient(onPush: (@Sendable (Message) -> Void)?) -> MessageClient {
        MessageClient(connector: SocketConnector(host: host.host, port: host.port), configuration: configuration,
                      eventLoopGroup: eventLoopGroup, logger: logger, onPush: onPush)
    }

    /// Closes the pooled connections.
    public func close() async { await pool.close() }
}

/// A broker whose connections come from a ``ClientConnector``: how transports other than TCP (an embedded node's
/// in-process sessions, see `InProcessBroker` in the `ZbusInProcess` library) get the broker API.
public final class ConnectorBroker: Broker {
    /// The connector's address (`in-process:NODE-NAME` for an embedded node).
    public let address: String
    /// The settings of every connection.
    public let configuration: ClientConfiguration
    private let connector: any ClientConnector
    private let pool: ClientPool
    private let eventLoopGroup: (any EventLoopGroup)?
    private let logger: Logger

    /// Creates a broker whose connections `connector` opens, at the first request.
    ///
    /// - Parameters:
    ///   - connector: opens the connections.
    ///   - configuration: the settings of every connection.
    ///   - poolSize: how many connections requests are spread over.
    ///   - eventLoopGroup: where the clients' state lives; NIO's shared singleton group by default.
    ///   - logger: where connection events are logged.
    public init(connector: any ClientConnector, configuration: ClientConfiguration = ClientConfiguration(), poolSize: Int = 2,
                eventLoopGroup: (any EventLoopGroup)? = nil, logger: Logger = Logger(label: "zbus.client")) {
        self.connector = connector
        self.address = connector.address
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
        pool = ClientPool(size: poolSize) {
            MessageClient(connector: connector, configuration: configuration, eventLoopGroup: eventLoopGroup, logger: logger, onPush: nil)
        }
    }

    /// Sends `request` on a pooled connection and waits for its reply (see ``Broker/send(_:timeout:)``).
    public nonisolated(nonsending) func send(_ request: Message, timeout: Duration?) async throws -> Message {
        try await pool.pick().send(request, timeout: timeout)
    }

    /// Sends `message`, which gets no reply, on a pooled connection.
    public nonisolated(nonsending) func sendOneWay(_ message: Message) async throws {
        try await pool.pick().sendOneWay(message)
    }

    /// One of the pooled connections.
    public func pooledClient() -> MessageClient { pool.pick() }

    /// A new connection of its own, not shared with the pool.
    public func makeClient(onPush: (@Sendable (Message) -> Void)?) -> MessageClient {
        MessageClient(connector: connector, configuration: configuration, eventLoopGroup: eventLoopGroup, logger: logger,
                      onPush: onPush)
    }

    /// Closes the pooled connections.
    public func close() async { await pool.close() }
}

/// A relaxed atomic counter.
final class ManagedAtomicCounter: Sendable {
    private let value = ManagedAtomic<UInt64>(0)

    func increment() -> UInt64 { value.loadThenWrappingIncrement(ordering: .relaxed) }
}
