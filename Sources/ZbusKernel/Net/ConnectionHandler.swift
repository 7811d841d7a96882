import Logging
import NIOCore

/// The whole pipeline of a node connection in one handler: it frames messages (``InboundFramer``), hands them to the
/// dispatcher, serializes the session's replies into one buffer per flush (``OutboundBatch``), answers framing errors
/// and stops reading while the peer does not drain its replies.
///
/// One handler rather than a decoder, an encoder and a handler behind them: messages never cross the channel pipeline,
/// which saves each one two `NIOAny` boxes, dynamic casts and several handler hops in each direction.
final class ConnectionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let dispatcher: CommandDispatcher
    private let hooks: ConnectionHooks
    private let sessionId: String
    private let remoteAddress: String
    /// The peer's IP alone, the key of the per-address connection count.
    private let remoteIP: String
    /// Whether the governor admitted this connection (and must be told when it goes).
    private var admitted = false
    /// Reads and flushes seen so far: the timeout check compares them with what it saw last time, which costs the
    /// read path one increment instead of a clock read.
    @exclusivity(unchecked) private var activity: UInt64 = 0
    private var checkedActivity: UInt64 = 0
    private var idleSince: NIODeadline = .now()
    /// When the header block now arriving was first seen unfinished by the timeout check, and how many messages had
    /// been cut by then (a later count means that block finished and a new one began).
    private var partialHeaderSince: (deadline: NIODeadline, messages: UInt64)?
    @exclusivity(unchecked) private var messagesCut: UInt64 = 0
    private var timeoutCheck: Scheduled<Void>?
    private var checkInterval = TimeAmount.seconds(1)
    /// Bytes charged to the node-wide budget for this connection's partial input and unread output.
    private var chargedInput = 0
    private var chargedOutput = 0
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
        self.remoteIP = remoteIP
        // The framer stamps `sender`, `server` and `remote-addr` as it decodes.
        self.framer = InboundFramer(limits: limits, stamp: dispatcher.stamp(for: (sessionId, remoteAddress)))
        self.outbound = OutboundBatch(allocator: allocator)
    }

    /// Sets up a node connection.
    static func configure(_ channel: any Channel, limits: MessageLimits, dispatcher: CommandDispatcher, hooks: ConnectionHooks) throws {
        let remote = channel.remoteAddress.map(describe) ?? "unknown"
        let handler = ConnectionHandler(dispatcher: dispatcher, hooks: hooks, sessionId: makeSessionId(), remoteAddress: remote,
                                        remoteIP: channel.remoteAddress?.ipAddress ?? remote,
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
        if let governor = hooks.governor {
            if let refusal = governor.admit(address: remoteIP) {
                // Answered before anything is read, so a client that reads its reply learns why; then closed. No
                // session exists for it, so nothing it sends is dispatched.
                hooks.logger.notice("connection refused", metadata: ["remote": "\(remoteAddress)", "reason": "\(refusal)"])
                var reply = Message(status: 503, body: ByteBuffer(string: refusal))
                reply.closeRequested = true
                outbound.append(reply, context: context)
                outbound.flushAndClose(context: context)
                context.fireChannelActive()
                return
            }
            admitted = true
            startTimeoutCheck(context: context, limits: governor.limits)
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
        activity &+= 1
        framer.append(unwrapInboundIn(data))
        session.beginReadBatch()
        do {
            while let message = try framer.next() {
                messagesCut &+= 1
                dispatcher.dispatch(stamped: message, session: session)
                // A reply may have closed the connection (HTTP/1.0, `connection: close`): stop cutting messages.
                if self.session == nil || session.isClosingAfterReply { framer.discardInput(); return }
            }
            if framer.takeContinueRequest() { outbound.append(raw: "HTTP/1.1 100 Continue\r\n\r\n") }
            // Only a partial message larger than the charge threshold counts against the node-wide budget (one
            // comparison on the common path, where nothing or a small tail is held).
            let held = framer.heldFootprint
            if held >= ConnectionLimits.chargeThreshold || chargedInput > 0 { chargeInput(held, context: context) }
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
        timeoutCheck?.cancel()
        timeoutCheck = nil
        if let governor = hooks.governor {
            if chargedInput + chargedOutput > 0 { governor.charge(-(chargedInput + chargedOutput)) }
            chargedInput = 0
            chargedOutput = 0
            if admitted { governor.release(address: remoteIP) }
            admitted = false
        }
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
        if writable {
            // The peer read down to the low watermark: what it had waiting no longer counts.
            if chargedOutput > 0, let governor = hooks.governor {
                governor.charge(-chargedOutput)
                chargedOutput = 0
            }
        }
        context.fireChannelWritabilityChanged()
    }

    // MARK: - Byte budgets

    /// Accounts for what waits for the peer to read after a flush; called only while the channel is not writable.
    /// Closes the connection (a slow consumer, as NATS and Redis treat one) when it holds more than
    /// `max_output_bytes`, or when the node-wide budget is spent and it holds a large share.
    private func chargeOutput(context: ChannelHandlerContext) {
        // After the channel closed (a write that failed closes it inside the flush, and the channel still reads as
        // not writable), `channelInactive` has released this connection's charges: charging again would leak them.
        guard let governor = hooks.governor, session != nil, context.channel.isActive else { return }
        let limits = governor.limits
        // What the channel holds, asked of the channel: only slow readers get here, and an estimate from bytes
        // written would count what the peer has read meanwhile as still waiting.
        guard let waiting = try? context.channel.syncOptions?.getOption(ChannelOptions.bufferedWritableBytes) else { return }
        let total = governor.charge(waiting - chargedOutput)
        chargedOutput = waiting
        let reason: String
        if waiting > limits.maxOutputBytes {
            reason = "\(waiting) bytes unread by the client, over \(limits.maxOutputBytes) (node.limits.max_output_bytes)"
        } else if governor.overBudget(total: total, held: waiting) {
            reason = "the node buffers \(total) bytes, over \(limits.maxBufferedBytes) (node.limits.max_buffered_bytes), \(waiting) of them for this client"
        } else {
            return
        }
        hooks.logger.warning("closing a slow consumer", metadata: [
            "session": "\(sessionId)", "remote": "\(remoteAddress)", "reason": "\(reason)",
        ])
        shed(context: context)
    }

    /// Accounts for a partial message held after a read; refuses it with 503 when the node-wide budget is spent.
    private func chargeInput(_ held: Int, context: ChannelHandlerContext) {
        guard let governor = hooks.governor, session != nil else { return }
        let counted = held >= ConnectionLimits.chargeThreshold ? held : 0
        let total = governor.charge(counted - chargedInput)
        chargedInput = counted
        guard governor.overBudget(total: total, held: counted) else { return }
        let reason = "the node buffers \(total) bytes of unfinished messages and unread replies, over \(governor.limits.maxBufferedBytes) (node.limits.max_buffered_bytes); try again later"
        hooks.logger.warning("refusing a partial message", metadata: [
            "session": "\(sessionId)", "remote": "\(remoteAddress)", "held": "\(held)",
        ])
        framer.discardInput()
        governor.charge(-chargedInput)
        chargedInput = 0
        session?.markClosed()
        var reply = Message(status: 503, body: ByteBuffer(string: reason))
        reply.closeRequested = true
        outbound.append(reply, context: context)
        outbound.flushAndClose(context: context)
    }

    /// Drops the connection at once, with what it had waiting: its peer does not read it anyway.
    private func shed(context: ChannelHandlerContext) {
        session?.markClosed()
        outbound.discard()
        context.close(promise: nil)
    }

    // MARK: - Timeouts

    /// Checks idleness and unfinished header blocks a few times per timeout, on the connection's loop. A check that
    /// runs rarely, rather than a timer re-armed per read, keeps the read path free of clock reads and scheduling.
    private func startTimeoutCheck(context: ChannelHandlerContext, limits: ConnectionLimits) {
        let shortest = [limits.idleTimeoutMilliseconds, limits.headerTimeoutMilliseconds].filter { $0 > 0 }.min()
        guard let shortest else { return }
        // A quarter of the shortest timeout: a connection is closed between 1x and 1.25x its timeout.
        checkInterval = .milliseconds(Int64(max(50, shortest / 4)))
        idleSince = .now()
        scheduleTimeoutCheck(on: context.eventLoop, limits: limits)
    }

    private func scheduleTimeoutCheck(on loop: any EventLoop, limits: ConnectionLimits) {
        timeoutCheck = loop.assumeIsolatedUnsafeUnchecked().scheduleTask(in: checkInterval) {
            guard self.checkTimeouts(idle: limits.idleTimeoutMilliseconds, header: limits.headerTimeoutMilliseconds) else { return }
            self.scheduleTimeoutCheck(on: loop, limits: limits)
        }
    }

    /// Returns whether to check again.
    private func checkTimeouts(idle: Int, header: Int) -> Bool {
        guard let context, session != nil else { return false }
        let now = NIODeadline.now()
        let current = activity &+ outbound.writtenBytes
        if current != checkedActivity {
            checkedActivity = current
            idleSince = now
        }
        if idle > 0, now - idleSince >= .milliseconds(Int64(idle)) {
            hooks.logger.debug("closing an idle connection", metadata: ["session": "\(sessionId)", "remote": "\(remoteAddress)"])
            session?.markClosed()
            context.close(promise: nil)
            return false
        }
        guard header > 0, framer.isReadingHeaderBlock else {
            partialHeaderSince = nil
            return true
        }
        if let since = partialHeaderSince, since.messages == messagesCut {
            if now - since.deadline >= .milliseconds(Int64(header)) {
                framer.discardInput()
                session?.markClosed()
                var reply = Message(status: 408, body: ByteBuffer(string:
                    "Request Timeout: the header block did not arrive within \(header) ms (node.limits.header_timeout)"))
                reply.closeRequested = true
                outbound.append(reply, context: context)
                outbound.flushAndClose(context: context)
                return false
            }
        } else {
            partialHeaderSince = (now, messagesCut)
        }
        return true
    }

    // MARK: - Session transport (event loop only)

    fileprivate func write(_ outgoing: Outgoing) {
        guard let context else { return }
        outbound.append(outgoing, context: context)
    }

    fileprivate func flush() {
        guard let context else { return }
        outbound.flush(context: context)
        // While the peer keeps up this is one load of the channel's writability flag per flush.
        if !context.channel.isWritable { chargeOutput(context: context) }
    }

    fileprivate func close() {
        guard let context else { return }
        outbound.flushAndClose(context: context)
    }

    private func refuse(_ error: MessageDecodingError, context: ChannelHandlerContext) {
        framer.discardInput()
        hooks.logger.debug("refusing malformed input", metadata: ["error": "\(error)", "session": "\(sessionId)"])
        session?.markClosed()
        outbound.append(error.closingReply, context: context)
        outbound.flushAndClose(context: context)
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
}

/// What a connection tells the node about its session's life.
struct ConnectionHooks: Sendable {
    let logger: Logger
    /// Connection and buffer limits; `nil` for connections the node does not govern (in-process ones).
    var governor: ConnectionGovernor? = nil
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
