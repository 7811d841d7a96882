import Logging
import NIOCore

/// The whole pipeline of a node connection in one handler: it frames messages (``InboundFramer``), hands them to the
/// dispatcher, serializes the session's replies into one buffer per flush (``OutboundBatch``), answers framing errors
/// and stops reading while the peer does not drain its replies.
///
/// One handler rather than a decoder, an encoder and a handler behind them: messages never cross the channel pipeline,
/// which saves each one two `NIOAny` boxes, dynamic casts and several handler hops in each direction.
final class ConnectionHandler: ChannelInboundHandler, RemovableChannelHandler, GuardedConnection {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let dispatcher: CommandDispatcher
    private let hooks: ConnectionHooks
    private let sessionId: String
    private let remoteAddress: String
    /// The connection and buffer limits of this connection.
    private let connectionGuard: ConnectionGuard
    /// Counters the guard's checks read; kept here so the read path pays plain increments (see ``GuardedConnection``).
    @exclusivity(unchecked) private var reads: UInt64 = 0
    @exclusivity(unchecked) private var messagesCut: UInt64 = 0
    /// Bytes read from the peer (`zbus_node_received_bytes_total`): one add per read, not per message.
    @exclusivity(unchecked) private var bytesRead: UInt64 = 0
    /// ``OutboundBatch/queuedBytes`` when the output budget was last looked at: below a step the guard is not called.
    @exclusivity(unchecked) private var outputChecked: UInt64 = 0
    // Unchecked exclusivity: touched only on the channel's event loop, and no access spans a call that could come
    // back here (`framer.next()` only parses; dispatch happens after it returned), so the per-access runtime check
    // on every message is pure cost.
    @exclusivity(unchecked) private var framer: InboundFramer
    private let outbound: OutboundBatch
    @exclusivity(unchecked) private var context: ChannelHandlerContext?
    @exclusivity(unchecked) private var session: Session?

    private init(dispatcher: CommandDispatcher, hooks: ConnectionHooks, sessionId: String, remoteAddress: String,
                 remoteIP: String, limits: MessageLimits, allocator: ByteBufferAllocator) {
        self.dispatcher = dispatcher
        self.hooks = hooks
        self.sessionId = sessionId
        self.remoteAddress = remoteAddress
        var logger = hooks.logger
        logger[metadataKey: "session"] = "\(sessionId)"
        self.connectionGuard = ConnectionGuard(governor: hooks.governor, remoteIP: remoteIP, remoteAddress: remoteAddress,
                                               logger: logger)
        // The framer stamps `sender`, `server` and `remote-addr` as it decodes.
        self.framer = InboundFramer(limits: limits, stamp: dispatcher.stamp(for: (sessionId, remoteAddress)))
        self.outbound = OutboundBatch(allocator: allocator)
    }

    /// Sets up a node connection.
    static func configure(_ channel: any Channel, limits: MessageLimits, dispatcher: CommandDispatcher, hooks: ConnectionHooks) throws {
        let remote = channel.remoteAddress.map(describe) ?? "unknown"
        let handler = ConnectionHandler(dispatcher: dispatcher, hooks: hooks, sessionId: makeSessionId(), remoteAddress: remote,
                                        remoteIP: ConnectionGovernor.addressKey(channel.remoteAddress),
                                        limits: limits, allocator: channel.allocator)
        try channel.pipeline.syncOperations.addHandler(handler)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        outbound.discard()
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        if let refusal = connectionGuard.admit(self, on: context.eventLoop) {
            // Answered before anything is read, so a client that reads its reply learns why; then closed. No session
            // exists for it, so nothing it sends is dispatched.
            refuse(with: refusal)
            context.fireChannelActive()
            return
        }
        let session = Session(id: sessionId, remoteAddress: remoteAddress,
                              transport: HandlerTransport(handler: self, eventLoop: context.eventLoop))
        self.session = session
        hooks.sessionOpened(session)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // A refused connection (framing error, budget) reads nothing more while its last reply goes out.
        guard let session, !session.isClosingAfterReply, session.isActive else { return }
        reads &+= 1
        let bytes = unwrapInboundIn(data)
        bytesRead &+= UInt64(bytes.readableBytes)
        framer.append(bytes)
        session.beginReadBatch()
        do {
            while let message = try framer.next() {
                messagesCut &+= 1
                dispatcher.dispatch(stamped: message, session: session)
                // A reply may have closed the connection (HTTP/1.0, `connection: close`, a slow consumer shed):
                // stop cutting messages.
                if self.session == nil || session.isClosingAfterReply || !session.isActive { framer.discardInput(); return }
            }
            if framer.takeContinueRequest() { outbound.append(raw: "HTTP/1.1 100 Continue\r\n\r\n") }
            // Only a partial message larger than the charge threshold counts against the node-wide budget (one
            // comparison on the common path, where nothing or a small tail is held).
            let held = framer.heldFootprint
            if held >= ConnectionLimits.chargeThreshold || connectionGuard.holdsInputCharge,
                let refusal = connectionGuard.chargeInput(held)
            {
                refuse(with: refusal)
            }
        } catch {
            refuse(error, context: context)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        session?.endReadBatch()
        // A `100 Continue` (the only thing written here without a session send) leaves with the batch.
        if !outbound.isEmpty { outbound.flush(context: context) }
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        connectionGuard.close()
        if let session {
            session.markClosed()
            hooks.sessionClosed(session)
        }
        session = nil
        framer.discardInput()
        outbound.discard()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        hooks.logger.trace("connection error", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }

    // MARK: - Read backpressure

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        // A client that pipelines requests without reading the replies cannot make the node buffer replies without
        // bound: reading stops while the channel is not writable. Switching the channel's automatic reads off and on
        // at the turns, rather than holding back each `read` on its way down the pipeline, keeps this handler out of
        // the path every read takes.
        let writable = context.channel.isWritable
        try? context.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: writable)
        if writable { connectionGuard.outputDrained() }
        context.fireChannelWritabilityChanged()
    }

    // MARK: - Guarded connection

    var isReadingHeaderBlock: Bool { framer.isReadingHeaderBlock }

    var activityCount: UInt64 { reads &+ outbound.writtenBytes }

    var messageCount: UInt64 { messagesCut }

    /// The bytes carried so far (on the event loop).
    var traffic: SessionTraffic { SessionTraffic(read: bytesRead, written: outbound.writtenBytes) }

    /// Drops the connection at once, with what it had waiting: its peer does not read it anyway.
    func closeNow() {
        guard let context else { return }
        session?.markClosed()
        outbound.discard()
        context.close(promise: nil)
    }

    func refuse(with reply: Message) {
        guard let context else { return }
        framer.discardInput()
        session?.markClosed()
        outbound.append(reply, context: context)
        outbound.flushAndClose(context: context)
    }

    // MARK: - Session transport (event loop only)

    fileprivate func write(_ outgoing: Outgoing) {
        guard let context else { return }
        outbound.append(outgoing, context: context)
        // One subtraction per write; a look at the channel every mebibyte queued.
        let queued = outbound.queuedBytes
        if queued &- outputChecked >= ConnectionGuard.outputCheckStep {
            outputChecked = queued
            if connectionGuard.chargeOutput(context.channel, unflushed: outbound.heldBytes) { closeNow() }
        }
    }

    fileprivate func flush() {
        guard let context else { return }
        outbound.flush(context: context)
        // While the peer keeps up this is one load of the channel's writability flag per flush.
        if !context.channel.isWritable {
            outputChecked = outbound.queuedBytes
            if connectionGuard.chargeOutput(context.channel) { closeNow() }
        }
    }

    fileprivate func close() {
        guard let context else { return }
        outbound.flushAndClose(context: context)
    }

    private func refuse(_ error: MessageDecodingError, context: ChannelHandlerContext) {
        hooks.logger.debug("refusing malformed input", metadata: ["error": "\(error)", "session": "\(sessionId)"])
        refuse(with: error.closingReply)
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

/// Writes a session's messages through its connection's ``ConnectionHandler``.
///
/// Sendable because ``SessionTransport`` is; every call arrives on `eventLoop` (``Session`` hops there first), which
/// is the only thread that touches the handler.
private struct HandlerTransport: SessionTransport, @unchecked Sendable {
    let handler: ConnectionHandler
    let eventLoop: any EventLoop

    func write(_ message: Message) {
        write(.message(message))
    }

    func write(_ outgoing: Outgoing) {
        eventLoop.assertInEventLoop()
        handler.write(outgoing)
    }

    func flush() { handler.flush() }

    func close() { handler.close() }

    var traffic: SessionTraffic { handler.traffic }
}

/// What a connection tells the node about its session's life.
struct ConnectionHooks: Sendable {
    let logger: Logger
    /// Connection and buffer limits.
    let governor: ConnectionGovernor
    let sessionOpened: @Sendable (Session) -> Void
    let sessionClosed: @Sendable (Session) -> Void
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
