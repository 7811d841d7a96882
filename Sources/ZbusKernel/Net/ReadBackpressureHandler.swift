import NIOCore

/// Stops reading from a peer while its channel is not writable, and reads again once it is: a client that pipelines
/// requests without reading the replies cannot make the server buffer replies without bound.
///
/// A pass-through handler; put it anywhere in a server pipeline.
public final class ReadBackpressureHandler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = NIOAny
    public typealias OutboundIn = NIOAny

    private var readHeld = false

    /// Creates the handler.
    public init() {}

    public func read(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            context.read()
        } else {
            readHeld = true
        }
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, readHeld {
            readHeld = false
            context.read()
        }
        context.fireChannelWritabilityChanged()
    }
}

extension MessageDecodingError {
    /// The reply a server sends before closing a connection whose input broke framing: the 4xx status, the reason
    /// as body, and `connection: close`.
    public var closingReply: Message {
        var reply = Message(status: status, body: ByteBuffer(string: description))
        reply.closeRequested = true
        return reply
    }
}
