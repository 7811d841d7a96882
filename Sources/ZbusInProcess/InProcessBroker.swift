import Logging
import NIOCore
import ZbusClient
import ZbusKernel

/// A broker for a node running in this process: the client's API, no socket.
public typealias InProcessBroker = ConnectorBroker

extension ConnectorBroker {
    /// Creates a broker for `node`, which must be started before the first request.
    ///
    /// - Parameters:
    ///   - node: the embedded node.
    ///   - configuration: the settings of every connection.
    ///   - poolSize: how many sessions requests are spread over.
    ///   - logger: where connection events are logged.
    public convenience init(node: Node, configuration: ClientConfiguration = ClientConfiguration(), poolSize: Int = 2,
                            logger: Logger = Logger(label: "zbus.client")) {
        self.init(connector: InProcessConnector(node: node), configuration: configuration, poolSize: poolSize, logger: logger)
    }
}

extension MessageClient {
    /// Creates a client that talks to `node`, running in this process, without a socket.
    ///
    /// - Parameters:
    ///   - node: a started node.
    ///   - configuration: timeouts, heartbeat and reconnect settings.
    ///   - eventLoopGroup: where the client's state lives; NIO's shared singleton group by default.
    ///   - logger: where connection events are logged.
    ///   - onPush: called with every message that answers no waiting request, on the client's event loop.
    public convenience init(
        node: Node,
        configuration: ClientConfiguration = ClientConfiguration(),
        eventLoopGroup: (any EventLoopGroup)? = nil,
        logger: Logger = Logger(label: "zbus.client"),
        onPush: (@Sendable (Message) -> Void)? = nil
    ) {
        self.init(connector: InProcessConnector(node: node), configuration: configuration, eventLoopGroup: eventLoopGroup,
                  logger: logger, onPush: onPush)
    }
}

/// Connects to a node in the same process, without a socket: its sessions are real sessions of the node (they get a
/// `sender`, can be routed to, and release what they hold when closed).
public struct InProcessConnector: ClientConnector {
    /// The node connected to; it must be started before the first connection.
    public let node: Node

    /// Connects to `node`.
    public init(node: Node) { self.node = node }

    /// `in-process:NODE-NAME`.
    public var address: String { "in-process:\(node.config.name)" }

    /// Opens an in-process session on the node; its messages are handed to the client on `eventLoop`.
    public func connect(
        on eventLoop: any EventLoop,
        configuration: ClientConfiguration,
        onMessage: @escaping @Sendable (consuming Message) -> Void,
        onClose: @escaping @Sendable (String?) -> Void
    ) -> EventLoopFuture<any ClientLink> {
        do {
            // The node calls back on its own event loops; hop to the client's so that its state stays confined there.
            let connection = try node.connectInProcess(
                onMessage: { message in eventLoop.execute { onMessage(message) } },
                onClose: { eventLoop.execute { onClose("the in-process session closed") } })
            return eventLoop.makeSucceededFuture(InProcessLink(connection: connection, eventLoop: eventLoop))
        } catch {
            return eventLoop.makeFailedFuture(error)
        }
    }
}

/// An in-process session.
final class InProcessLink: ClientLink {
    let connection: InProcessConnection
    let eventLoop: any EventLoop

    init(connection: InProcessConnection, eventLoop: any EventLoop) {
        self.connection = connection
        self.eventLoop = eventLoop
    }

    func write(_ message: Message) { connection.send(message) }

    func flush() {}

    func close() -> EventLoopFuture<Void> {
        connection.close()
        return eventLoop.makeSucceededVoidFuture()
    }
}
