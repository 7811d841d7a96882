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
public final class MessageEncoder: ChannelOutboundHandler, Sendable {
    public typealias OutboundIn = Message
    public typealias OutboundOut = ByteBuffer

    /// Bodies up to this size are copied next to the head so that the message leaves in one buffer; larger ones are
    /// written as a second buffer (no copy, one `writev`).
    private static let inlineBodyLimit = 16 * 1024

    /// Creates an encoder.
    public init() {}

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let message = unwrapOutboundIn(data)
        let bodySize = message.body?.readableBytes ?? 0
        if bodySize <= Self.inlineBodyLimit {
            var buffer = context.channel.allocator.buffer(capacity: MessageSerializer.estimatedHeadSize(message) + bodySize)
            MessageSerializer.write(message, into: &buffer)
            context.write(wrapOutboundOut(buffer), promise: promise)
        } else {
            var head = context.channel.allocator.buffer(capacity: MessageSerializer.estimatedHeadSize(message))
            MessageSerializer.writeHead(message, into: &head)
            context.write(wrapOutboundOut(head), promise: nil)
            context.write(wrapOutboundOut(message.body!), promise: promise)
        }
    }
}
