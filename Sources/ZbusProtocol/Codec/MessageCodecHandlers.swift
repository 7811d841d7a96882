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
/// Messages written between two flushes are serialized into one buffer (an ``OutboundBatch``), handed on at the flush:
/// one pending write for a whole batch of replies (a pipelining client gets many per read), instead of one each. For
/// connections whose last handler frames messages itself, use ``OutboundBatch`` directly.
public final class MessageEncoder: ChannelOutboundHandler, RemovableChannelHandler {
    public typealias OutboundIn = Message
    public typealias OutboundOut = ByteBuffer

    private var batch: OutboundBatch?
    private var pendingPromises: [EventLoopPromise<Void>] = []

    /// Creates an encoder.
    public init() {}

    public func handlerAdded(context: ChannelHandlerContext) {
        batch = OutboundBatch(allocator: context.channel.allocator)
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        batch?.append(unwrapOutboundIn(data), context: context)
        if let promise { pendingPromises.append(promise) }
    }

    public func flush(context: ChannelHandlerContext) {
        var combined: EventLoopPromise<Void>?
        if !pendingPromises.isEmpty {
            // One promise for the batch's write, completing those of every message in it.
            let promises = pendingPromises
            pendingPromises = []
            combined = context.eventLoop.makePromise(of: Void.self)
            for promise in promises { combined!.futureResult.cascade(to: promise) }
        }
        batch?.flush(context: context, promise: combined)
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        // Unflushed messages are dropped with the channel, as unflushed writes are; their promises must still complete.
        batch?.discard()
        let promises = pendingPromises
        pendingPromises = []
        for promise in promises { promise.fail(ChannelError.ioOnClosedChannel) }
    }
}
