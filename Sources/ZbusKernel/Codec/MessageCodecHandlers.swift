import NIOCore

/// Channel decoder: bytes in, ``Message`` out, limits enforced by ``MessageParser``.
public struct MessageDecoder: ByteToMessageDecoder {
    public typealias InboundOut = Message

    private var parser: MessageParser

    /// Creates a decoder enforcing `limits`, stamping `stamp` (if any) on every message.
    public init(limits: MessageLimits = .default, stamp: InboundStamp? = nil) {
        self.parser = MessageParser(limits: limits, stamp: stamp)
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let message = try parser.next(&buffer) else {
            if parser.takeContinueRequest() {
                // Written from the decoder's position, so the raw bytes go straight to the socket.
                context.writeAndFlush(NIOAny(ByteBuffer(staticString: "HTTP/1.1 100 Continue\r\n\r\n")), promise: nil)
            }
            return .needMoreData
        }
        context.fireChannelRead(wrapInboundOut(message))
        return .continue
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        // A message cut short by the peer closing is dropped: there is nobody left to answer.
        while try decode(context: context, buffer: &buffer) == .continue {}
        buffer.moveReaderIndex(to: buffer.writerIndex)
        return .needMoreData
    }
}

/// Channel encoder: ``Message`` in, bytes out.
///
/// Messages written between two flushes are serialized into one buffer, handed on at the flush: one allocation and
/// one pending write for a whole batch of replies (a pipelining client gets many per read), instead of one each.
public final class MessageEncoder: ChannelOutboundHandler, RemovableChannelHandler {
    public typealias OutboundIn = Message
    public typealias OutboundOut = ByteBuffer

    /// Bodies up to this size are copied next to their head; larger ones go out as their own buffer (no copy).
    private static let inlineBodyLimit = 16 * 1024

    private var pending: ByteBuffer?
    private var pendingPromises: [EventLoopPromise<Void>] = []

    /// Creates an encoder.
    public init() {}

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let message = unwrapOutboundIn(data)
        let bodySize = message.body?.readableBytes ?? 0
        if bodySize > Self.inlineBodyLimit {
            writePending(context: context)
            var head = context.channel.allocator.buffer(capacity: MessageSerializer.estimatedHeadSize(message))
            MessageSerializer.writeHead(message, into: &head)
            context.write(wrapOutboundOut(head), promise: nil)
            context.write(wrapOutboundOut(message.body!), promise: promise)
            return
        }
        if pending == nil {
            pending = context.channel.allocator.buffer(capacity: max(1024, MessageSerializer.estimatedHeadSize(message) + bodySize))
        }
        MessageSerializer.write(message, into: &pending!)
        if let promise { pendingPromises.append(promise) }
    }

    public func flush(context: ChannelHandlerContext) {
        writePending(context: context)
        context.flush()
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        // Unflushed messages are dropped with the channel, as unflushed writes are; their promises must still complete.
        pending = nil
        let promises = pendingPromises
        pendingPromises = []
        for promise in promises { promise.fail(ChannelError.ioOnClosedChannel) }
    }

    private func writePending(context: ChannelHandlerContext) {
        guard let buffer = pending else { return }
        pending = nil
        if pendingPromises.isEmpty {
            context.write(wrapOutboundOut(buffer), promise: nil)
            return
        }
        let promises = pendingPromises
        pendingPromises = []
        let combined = context.eventLoop.makePromise(of: Void.self)
        for promise in promises { combined.futureResult.cascade(to: promise) }
        context.write(wrapOutboundOut(buffer), promise: combined)
    }
}
