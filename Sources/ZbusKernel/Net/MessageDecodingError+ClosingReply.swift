import NIOCore

extension MessageDecodingError {
    /// The reply a server sends before closing a connection whose input broke framing: the 4xx status, the reason
    /// as body, and `connection: close`.
    public var closingReply: Message {
        var reply = Message(status: status, body: ByteBuffer(string: description))
        reply.closeRequested = true
        return reply
    }
}
