import NIOCore
import ZbusKernel

extension DeliveryActions where Peer == Session {
    /// Sends everything, in order: what the delivery state machines decided under the MQ's lock, carried out once it
    /// is released.
    func send() {
        forEach { action in
            switch action {
            case .deliver(.message(let message), let session, let reply):
                session.send(message.delivered(requestId: reply.requestId, close: reply.closeAfterReply))
            case .deliver(.record(let record), let session, let reply):
                session.send(.delivery(record: record, requestId: reply.requestId, close: reply.closeAfterReply))
            case .end(let ending, let mq, let session, let reply):
                session.send(Self.reply(ending, mq: mq, to: reply))
            }
        }
    }

    /// The reply that ends a consume without a message.
    static func reply(_ ending: PullEnding, mq: String, to pull: PullReply) -> Message {
        var reply: Message
        switch ending {
        case .nothingCame:
            reply = Message(status: 204)
        case .tooManyParked(let limit):
            reply = Message(status: 429, body: ByteBuffer(
                string: "MQ(\(mq)) parked consume limit reached: \(limit) consumes waiting (mq.max_parked_consumes)"))
        case .queueRemoved:
            reply = Message(status: 404, body: ByteBuffer(string: "MQ(\(mq)) Not Found"))
        }
        reply.mq = mq
        reply.id = pull.requestId
        reply.closeRequested = pull.closeAfterReply
        return reply
    }
}
