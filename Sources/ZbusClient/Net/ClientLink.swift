import NIOCore
import NIOPosix

/// One open connection of a ``MessageClient``: a socket, or another transport (an in-process session on an embedded
/// node, see the `ZbusInProcess` library).
public protocol ClientLink: AnyObject, Sendable {
    /// Queues `message`; called on the client's event loop.
    func write(_ message: Message)
    /// Writes out what was queued; called on the client's event loop.
    func flush()
    /// Closes the connection; the future completes once it is closed.
    func close() -> EventLoopFuture<Void>
}

/// Opens links to one node: how a transport plugs into ``MessageClient`` and ``ConnectorBroker``.
public protocol ClientConnector: Sendable {
    /// The node's address, for messages and errors.
    var address: String { get }

    /// Opens a link whose events are reported on `eventLoop`: `onMessage` for every inbound message, in order, and
    /// `onClose` once when it closes (with a reason when it broke).
    func connect(
        on eventLoop: any EventLoop,
        configuration: ClientConfiguration,
        onMessage: @escaping @Sendable (consuming Message) -> Void,
        onClose: @escaping @Sendable (String?) -> Void
    ) -> EventLoopFuture<any ClientLink>
}

/// Connects over TCP (in TLS when the configuration has ``ClientConfiguration/tls``), framing with the kernel's ``InboundFramer`` and ``OutboundBatch`` in one handler.
struct SocketConnector: ClientConnector {
    let host: String
    let port: Int

    var address: String { HostAndPort(host: host, port: port).description }

    func connect(
        on eventLoop: any EventLoop,
        configuration: ClientConfiguration,
        onMessage: @escaping @Sendable (consuming Message) -> Void,
        onClose: @escaping @Sendable (String?) -> Void
    ) -> EventLoopFuture<any ClientLink> {
        let limits = configuration.limits
        let tls = configuration.tls
        let host = self.host
        return ClientBootstrap(group: eventLoop)
            .connectTimeout(configuration.connectTimeout.timeAmount)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // The TLS handler comes first: the framing handler then reads and writes plaintext either way.
                    try tls?.addHandler(to: channel, host: host)
                    let handler = ClientStreamHandler(limits: limits, allocator: channel.allocator, onMessage: onMessage, onClose: onClose)
                    try channel.pipeline.syncOperations.addHandler(handler)
                }
            }
            .connect(host: host, port: port)
            .flatMapThrowing { channel in
                let handler = try channel.pipeline.syncOperations.handler(type: ClientStreamHandler.self)
                return SocketLink(channel: channel, handler: handler) as any ClientLink
            }
    }

    /// Why a connect failed, in one line. NIO's `NIOConnectionError` describes itself with a dump of each address
    /// tried; this names the addresses and their system errors.
    static func describe(connectFailure error: any Error) -> String {
        guard let error = error as? NIOConnectionError else { return ErrorText.describe(error) }
        if let dns = error.dnsAError ?? error.dnsAAAAError { return "cannot resolve \(error.host): \(ErrorText.describe(dns))" }
        guard !error.connectionErrors.isEmpty else { return "no address of \(error.host) could be connected to" }
        return error.connectionErrors.map { failure in
            let address = HostAndPort(host: failure.target.ipAddress ?? error.host, port: failure.target.port ?? error.port)
            return "\(address): \(ErrorText.describe(failure.error))"
        }.joined(separator: "; ")
    }
}

/// A TCP connection. Its methods are called on the channel's event loop (the client's), the only thread that touches
/// the handler, hence the unchecked conformance. A class: the client looks its link up for every request, and a class
/// reference is one retain where a struct of two references is two.
final class SocketLink: ClientLink, @unchecked Sendable {
    let channel: any Channel
    let handler: ClientStreamHandler

    init(channel: any Channel, handler: ClientStreamHandler) {
        self.channel = channel
        self.handler = handler
    }

    func write(_ message: Message) { handler.write(message) }

    func flush() { handler.flush() }

    func close() -> EventLoopFuture<Void> {
        channel.close().recover { _ in }
    }
}

/// The whole pipeline of a client connection in one handler: messages are cut from the bytes read and handed up in
/// order, messages written between two flushes leave in one buffer, and the end of the connection is reported once.
final class ClientStreamHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    // Unchecked exclusivity: event-loop confined, and no access spans a call back into the handler (see
    // `ConnectionHandler`).
    @exclusivity(unchecked) private var framer: InboundFramer
    private let outbound: OutboundBatch
    @exclusivity(unchecked) private var context: ChannelHandlerContext?
    private let onMessage: @Sendable (consuming Message) -> Void
    private let onClose: @Sendable (String?) -> Void
    private var failure: String?

    init(limits: MessageLimits, allocator: ByteBufferAllocator, onMessage: @escaping @Sendable (consuming Message) -> Void,
         onClose: @escaping @Sendable (String?) -> Void) {
        self.framer = InboundFramer(limits: limits)
        self.outbound = OutboundBatch(allocator: allocator)
        self.onMessage = onMessage
        self.onClose = onClose
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) {
        outbound.discard()
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        framer.append(unwrapInboundIn(data))
        do {
            while let message = try framer.next() { onMessage(message) }
        } catch {
            framer.discardInput()
            if failure == nil { failure = "\(error)" }
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        framer.discardInput()
        outbound.discard()
        onClose(failure ?? "closed by the node")
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if failure == nil { failure = ErrorText.describe(error) }
        context.close(promise: nil)
    }

    func write(_ message: Message) {
        guard let context else { return }
        outbound.append(message, context: context)
    }

    func flush() {
        guard let context else { return }
        outbound.flush(context: context)
    }
}
