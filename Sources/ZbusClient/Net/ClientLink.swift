import NIOCore
import NIOPosix

/// One open connection of a ``MessageClient``: a socket, or an in-process session on an embedded node.
protocol ClientLink: Sendable {
    /// Queues `message`; called on the client's event loop.
    func write(_ message: Message)
    /// Writes out what was queued; called on the client's event loop.
    func flush()
    /// Closes the connection; the future completes once it is closed.
    func close() -> EventLoopFuture<Void>
}

/// Opens links to one node.
protocol ClientConnector: Sendable {
    /// The node's address, for messages and errors.
    var address: String { get }

    /// Opens a link whose events are reported on `eventLoop`: `onMessage` for every inbound message, in order, and
    /// `onClose` once when it closes (with a reason when it broke).
    func connect(
        on eventLoop: any EventLoop,
        configuration: ClientConfiguration,
        onMessage: @escaping @Sendable (Message) -> Void,
        onClose: @escaping @Sendable (String?) -> Void
    ) -> EventLoopFuture<any ClientLink>
}

/// Connects over TCP, framing with the kernel's ``MessageDecoder`` and ``MessageEncoder``.
struct SocketConnector: ClientConnector {
    let host: String
    let port: Int

    var address: String { HostAndPort(host: host, port: port).description }

    func connect(
        on eventLoop: any EventLoop,
        configuration: ClientConfiguration,
        onMessage: @escaping @Sendable (Message) -> Void,
        onClose: @escaping @Sendable (String?) -> Void
    ) -> EventLoopFuture<any ClientLink> {
        let limits = configuration.limits
        return ClientBootstrap(group: eventLoop)
            .connectTimeout(configuration.connectTimeout.timeAmount)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    try pipeline.addHandler(ByteToMessageHandler(MessageDecoder(limits: limits)))
                    try pipeline.addHandler(MessageEncoder())
                    try pipeline.addHandler(ClientInboundHandler(onMessage: onMessage, onClose: onClose))
                }
            }
            .connect(host: host, port: port)
            .map { SocketLink(channel: $0) as any ClientLink }
    }
}

/// A TCP connection.
struct SocketLink: ClientLink {
    let channel: any Channel

    func write(_ message: Message) { channel.write(message, promise: nil) }

    func flush() { channel.flush() }

    func close() -> EventLoopFuture<Void> {
        channel.close().recover { _ in }
    }
}

/// The last handler of a client connection: hands messages up and reports the end of the connection once.
final class ClientInboundHandler: ChannelInboundHandler {
    typealias InboundIn = Message

    private let onMessage: @Sendable (Message) -> Void
    private let onClose: @Sendable (String?) -> Void
    private var failure: String?

    init(onMessage: @escaping @Sendable (Message) -> Void, onClose: @escaping @Sendable (String?) -> Void) {
        self.onMessage = onMessage
        self.onClose = onClose
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        onMessage(unwrapInboundIn(data))
    }

    func channelInactive(context: ChannelHandlerContext) {
        onClose(failure ?? "closed by the node")
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if failure == nil { failure = "\(error)" }
        context.close(promise: nil)
    }
}

/// Connects to a node in the same process, without a socket.
struct InProcessConnector: ClientConnector {
    let node: Node

    var address: String { "in-process:\(node.config.name)" }

    func connect(
        on eventLoop: any EventLoop,
        configuration: ClientConfiguration,
        onMessage: @escaping @Sendable (Message) -> Void,
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
struct InProcessLink: ClientLink {
    let connection: InProcessConnection
    let eventLoop: any EventLoop

    func write(_ message: Message) { connection.send(message) }

    func flush() {}

    func close() -> EventLoopFuture<Void> {
        connection.close()
        return eventLoop.makeSucceededVoidFuture()
    }
}
