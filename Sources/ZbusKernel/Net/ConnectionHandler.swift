import Logging
import NIOCore

/// The last handler of a node connection: owns the ``Session``, hands messages to the dispatcher and answers framing
/// errors. (``ReadBackpressureHandler`` before it stops reading while the peer does not drain its replies.)
final class ConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = Message
    typealias OutboundIn = Message
    typealias OutboundOut = Message

    private let dispatcher: CommandDispatcher
    private let hooks: ConnectionHooks
    private let sessionId: String
    private let remoteAddress: String
    private var session: Session?

    private init(dispatcher: CommandDispatcher, hooks: ConnectionHooks, sessionId: String, remoteAddress: String) {
        self.dispatcher = dispatcher
        self.hooks = hooks
        self.sessionId = sessionId
        self.remoteAddress = remoteAddress
    }

    /// Sets up a node connection: decoder (which stamps `sender`, `server` and `remote-addr` as it decodes), encoder,
    /// and this handler.
    static func configure(_ channel: any Channel, limits: MessageLimits, dispatcher: CommandDispatcher, hooks: ConnectionHooks) throws {
        let sessionId = makeSessionId()
        let remote = channel.remoteAddress.map(describe) ?? "unknown"
        let stamp = dispatcher.stamp(for: (sessionId, remote))
        let pipeline = channel.pipeline.syncOperations
        try pipeline.addHandler(ByteToMessageHandler(MessageDecoder(limits: limits, stamp: stamp)))
        try pipeline.addHandler(MessageEncoder())
        try pipeline.addHandler(ReadBackpressureHandler())
        try pipeline.addHandler(ConnectionHandler(dispatcher: dispatcher, hooks: hooks, sessionId: sessionId, remoteAddress: remote))
    }

    func channelActive(context: ChannelHandlerContext) {
        let session = Session(id: sessionId, remoteAddress: remoteAddress, transport: ChannelTransport(channel: context.channel))
        self.session = session
        hooks.sessionOpened(session)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let session, !session.isClosingAfterReply else { return }
        session.beginReadBatch()
        dispatcher.dispatch(stamped: unwrapInboundIn(data), session: session)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        session?.endReadBatch()
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let session {
            session.markClosed()
            hooks.sessionClosed(session)
        }
        session = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let error = error as? MessageDecodingError, context.channel.isActive {
            hooks.logger.debug("refusing malformed input", metadata: ["error": "\(error)", "session": "\(session?.id ?? "-")"])
            session?.markClosed()
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(error.closingReply)).whenComplete { _ in channel.close(promise: nil) }
        } else {
            hooks.logger.trace("connection error", metadata: ["error": "\(error)"])
            context.close(promise: nil)
        }
    }

    private static func describe(_ address: SocketAddress) -> String {
        guard let ip = address.ipAddress, let port = address.port else { return "\(address)" }
        return "\(ip):\(port)"
    }

    private static func makeSessionId() -> String {
        var generator = SystemRandomNumberGenerator()
        return SessionId.random(using: &generator)
    }
}

/// What a connection tells the node about its session's life.
struct ConnectionHooks: Sendable {
    let logger: Logger
    let sessionOpened: @Sendable (Session) -> Void
    let sessionClosed: @Sendable (Session) -> Void
}

/// Writes a session's messages to its channel.
struct ChannelTransport: SessionTransport {
    let channel: any Channel

    var eventLoop: any EventLoop { channel.eventLoop }

    func write(_ message: Message) { channel.write(message, promise: nil) }

    func flush() { channel.flush() }

    func close() { channel.close(promise: nil) }
}

/// Random version-4 UUID strings, without Foundation.
enum SessionId {
    static func random<G: RandomNumberGenerator>(using generator: inout G) -> String {
        var bytes = (0..<16).map { _ in UInt8.random(in: 0...255, using: &generator) }
        bytes[6] = (bytes[6] & 0x0F) | 0x40
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        let hex = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(36)
        for (offset, byte) in bytes.enumerated() {
            if offset == 4 || offset == 6 || offset == 8 || offset == 10 { text.append(UInt8(ascii: "-")) }
            text.append(hex[Int(byte >> 4)])
            text.append(hex[Int(byte & 0x0F)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}
