/// What the node's answer to a `consume` is: a delivered message, or one of the node's own answers.
///
/// A delivered message carries the producer's id in `rawid`; the node's own answers carry none, which is how a 204 or a
/// 404 produced by someone else (a message whose status line says 404) is told from the node's. ``Consumer`` and
/// loop-driven consumers (``MessageClient/send(_:timeout:onReply:)``) read consume answers through this one type.
public enum ConsumeReply: Sendable {
    /// A message. As zbus 6 consumers present it: `id` is the producer's id (`rawid` removed) and `sender` stays, so
    /// that an answer can be routed back.
    case message(Message)
    /// 204: nothing came within the consume's wait limit.
    case nothing
    /// 404 `MQ(name) Not Found`: the MQ does not exist (any more).
    case notFound(body: String)
    /// 403 (a wrong token) or 400 (a malformed consume): this consumer may not consume here; or the node cannot serve
    /// the consume now (429 at `max_parked_consumes`, 5xx when the MQ cannot be opened or a stored message cannot be
    /// read). Never a message: a consumer that handed it on as one would answer it, consume again and get it again.
    case refused(status: Int, body: String)

    /// Whether a 403's body is the node's refusal: `MQ(name) forbidden` (6.3 spelled it `forbbiden`), followed by
    /// what was missing since access control (`MQ(name) forbidden: consume needs ...`).
    static func isRefusal(_ body: String) -> Bool {
        guard body.hasPrefix("MQ(") else { return false }
        return body.hasSuffix(") forbidden") || body.hasSuffix(") forbbiden") || body.firstRange(of: ") forbidden: ") != nil
    }

    /// Whether a 429 or 5xx body is the node's own answer to a consume (see the MQ module's consume path), not a
    /// message produced with that status: `MQ(name) parked consume limit reached: ...`, `MQ(name) cannot be opened
    /// now: ...`, `stored message unreadable: ...`.
    static func isNodeTrouble(_ body: String) -> Bool {
        if body.hasPrefix("stored message unreadable: ") { return true }
        guard body.hasPrefix("MQ(") else { return false }
        return body.firstRange(of: ") parked consume limit reached: ") != nil || body.firstRange(of: ") cannot be opened now: ") != nil
    }

    /// How a delivered message's ids are handed on.
    package enum Presentation {
        /// As zbus 6 consumers present it, edited in place: for a message read off a connection, whose header block
        /// nothing else holds.
        case editInPlace
        /// As zbus 6 consumers present it, the header block rebuilt in one pass (`Headers.forConsumer`): for a message
        /// handed over in process, whose block is still shared with the message in transit (an edit would copy it
        /// first, then shift it).
        case rebuild
        /// As the node delivered it (`id` = the consume's id, `rawid` = the producer's id, absent when the producer
        /// sent none), for a consumer that reads the producer's id from `rawid`: nothing rebuilt.
        case delivered
    }

    /// Reads the answer to a consume.
    public init(_ reply: consuming Message) {
        self.init(reply, presenting: .editInPlace)
    }

    /// Reads the answer to a consume, handing a message on as `presentation` says.
    package init(_ reply: consuming Message, presenting presentation: Presentation) {
        let status = reply.status ?? 200
        if reply.rawId == nil {
            switch status {
            case 204 where reply.body == nil || reply.body?.readableBytes == 0:
                self = .nothing
                return
            case 404 where reply.bodyString.hasSuffix(") Not Found"):
                self = .notFound(body: reply.bodyString)
                return
            case 403 where Self.isRefusal(reply.bodyString):
                self = .refused(status: status, body: reply.bodyString)
                return
            case 400 where reply.bodyString.hasPrefix("Bad format"):
                self = .refused(status: status, body: reply.bodyString)
                return
            case 429 where Self.isNodeTrouble(reply.bodyString), 500...599 where Self.isNodeTrouble(reply.bodyString):
                self = .refused(status: status, body: reply.bodyString)
                return
            default:
                break  // a message produced without an id
            }
        }
        // Moved, not copied: a copy would share the header block and an edit would duplicate it.
        var message = consume reply
        switch presentation {
        case .editInPlace: message.id = message.headers.removeValue(lowercased: HeaderName.rawId)
        case .rebuild: message.headers = message.headers.forConsumer()
        case .delivered: break
        }
        self = .message(message)
    }
}
