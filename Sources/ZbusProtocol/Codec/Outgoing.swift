import NIOCore

/// What a node sends on a connection: a ``Message``, or a form that a transport framing bytes writes without building
/// one (the two things a broker sends most: acknowledgements and deliveries of stored messages).
public enum Outgoing: Sendable {
    /// A message.
    case message(Message)
    /// The acknowledgement of a `produce` as zbus 6 nodes send it: `200` with the request's `id` and `mq`, and the
    /// node's time in milliseconds as body.
    case acknowledgement(id: String?, mq: String?, time: Int64)
    /// A record kept in wire form (for example a stored message) sent as the message it stands for, rewritten on the
    /// way by `encoder` for the request `requestId`; `close` asks the peer to close after it.
    case record(ByteBuffer, requestId: String?, close: Bool, encoder: any OutgoingRecordEncoder.Type)

    /// The same thing as a ``Message`` (a record is parsed by its encoder).
    public var message: Message {
        switch self {
        case .message(let message): message
        case .acknowledgement(let id, let mq, let time): Message.reply(status: 200, body: String(time), id: id, mq: mq)
        case .record(let record, let requestId, let close, let encoder):
            encoder.message(record: record, requestId: requestId, close: close)
        }
    }

    /// The same thing, carrying `connection: close`.
    public var closing: Outgoing {
        switch self {
        case .record(let record, let requestId, _, let encoder):
            return .record(record, requestId: requestId, close: true, encoder: encoder)
        case .message, .acknowledgement:
            var message = self.message
            message.closeRequested = true
            return .message(message)
        }
    }
}

/// Writes records kept in wire form as the messages they stand for, for ``Outgoing/record(_:requestId:close:encoder:)``.
///
/// A module that keeps messages as bytes (the MQ module's store) conforms a type with static methods, so an outgoing
/// record carries only a metatype: no allocation per message, and the bytes go from the record into the connection's
/// buffer without parsing.
public protocol OutgoingRecordEncoder: SendableMetatype {
    /// Appends the message `record` stands for, answered to `requestId`, to `buffer`.
    static func write(record: ByteBuffer, requestId: String?, close: Bool, into buffer: inout ByteBuffer)
    /// The message `record` stands for, answered to `requestId` (for transports that carry messages, not bytes).
    static func message(record: ByteBuffer, requestId: String?, close: Bool) -> Message
}
