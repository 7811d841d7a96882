import NIOCore
import ZbusKernel

extension MessageQueue {
    /// The executor's collector of the delivery state machines' actions: each becomes the message to send as it comes
    /// (under the MQ's lock), and everything is sent, in order, once the lock is released.
    struct Deliveries: DeliveryCollector {
        // The first one is held inline: a call delivers one message or none nearly always, and an array would be
        // allocated for that one.
        private var first: (Session, Outgoing)?
        private var rest: [(Session, Outgoing)] = []

        // Inlined into the state machines (specialized for this collector), so that the action is never built: the
        // payload goes straight into the message to send.
        @inline(__always)
        mutating func append(_ action: consuming DeliveryAction<Session>) {
            switch consume action {
            case .deliver(.message(let message), let session, let reply):
                append(.message(message.delivered(requestId: reply.requestId, close: reply.closeAfterReply)), to: session)
            case .deliver(.record(let record), let session, let reply):
                append(.record(record, requestId: reply.requestId, close: reply.closeAfterReply, encoder: StoredDelivery.self), to: session)
            case .end(let ending, let mq, let session, let reply):
                append(.message(Self.reply(ending, mq: mq, to: reply)), to: session)
            }
        }

        private mutating func append(_ outgoing: Outgoing, to session: Session) {
            if first == nil { first = (session, outgoing) } else { rest.append((session, outgoing)) }
        }

        /// Sends everything, in order.
        func send() {
            guard let (session, outgoing) = first else { return }
            session.send(outgoing)
            for (session, outgoing) in rest { session.send(outgoing) }
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
}
