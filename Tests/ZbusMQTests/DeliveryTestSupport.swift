import DequeModule
import NIOCore
import ZbusKernel

@testable import ZbusMQ

/// A consumer in a state machine test: no connection, just a name and whether it is still connected.
final class TestPeer: DeliveryPeer, CustomStringConvertible {
    let name: String
    var isActive = true
    /// An in-process worker (see ``DeliveryPeer/isLoopWorker``).
    var isLoopWorker = false
    /// Whether the test stands on this peer's event loop as it dispatches.
    var isOnCurrentLoop = false

    init(_ name: String, loopWorker: Bool = false, onCurrentLoop: Bool = false) {
        self.name = name
        self.isLoopWorker = loopWorker
        self.isOnCurrentLoop = onCurrentLoop
    }

    var description: String { name }
}

/// The store side of a point-to-point test: stored messages handed out in order, as `backend.next()` does.
struct TestStore {
    private var messages: Deque<StoredMessage> = []
    private var nextSequence: UInt64 = 1

    /// Stores messages with bodies `bodies`, in order, each under the next sequence.
    mutating func store(_ bodies: String...) {
        for body in bodies {
            messages.append(StoredMessage(sequence: nextSequence, payload: .record(ByteBuffer(string: body))))
            nextSequence += 1
        }
    }

    var pendingCount: Int { messages.count }

    mutating func next() -> StoredMessage? { messages.popFirst() }
}

/// Actions written compactly, so a test states what was sent in one line: `A<-m1#a1` (message body `m1` to peer A
/// answering consume id `a1`), `A:204#a1`, `A:429#a1`, `A:404#a1`.
func describe(_ actions: DeliveryActions<TestPeer>) -> [String] {
    actions.all.map { action in
        switch action {
        case .deliver(.record(let record), let peer, let reply):
            return "\(peer)<-\(String(buffer: record))#\(reply.requestId ?? "-")"
        case .deliver(.message(let message), let peer, let reply):
            return "\(peer)<-\(message.bodyString)#\(reply.requestId ?? "-")"
        case .end(let ending, _, let peer, let reply):
            let status = switch ending {
            case .nothingCame: "204"
            case .tooManyParked: "429"
            case .queueRemoved: "404"
            }
            return "\(peer):\(status)#\(reply.requestId ?? "-")"
        }
    }
}

/// A consume's reply address with id `id`.
func pull(_ id: String, close: Bool = false) -> PullReply { PullReply(requestId: id, closeAfterReply: close) }

/// A point in time for wait limits: `t(ms)` milliseconds after an arbitrary origin (no clock is read).
func t(_ milliseconds: Int64) -> NIODeadline { .uptimeNanoseconds(1_000_000_000 + UInt64(milliseconds) * 1_000_000) }

extension PointToPointDelivery where Peer == TestPeer {
    /// A consume by `peer` with id `id`; returns what was sent and the rest of the outcome.
    @discardableResult
    mutating func consume(_ peer: TestPeer, _ id: String, wait: WaitLimit = .unlimited,
                          from store: inout TestStore) -> (sent: [String], outcome: ConsumeOutcome) {
        var actions = DeliveryActions<TestPeer>()
        let outcome = consume(from: peer, reply: pull(id), wait: wait, into: &actions, next: { store.next() })
        return (describe(actions), outcome)
    }

    /// Messages were stored: what dispatching them sends.
    mutating func dispatch(from store: inout TestStore) -> [String] {
        var actions = DeliveryActions<TestPeer>()
        dispatch(into: &actions, next: { store.next() })
        return describe(actions)
    }

    /// `peer`'s connection closed: what redelivering its messages sends.
    mutating func close(_ peer: TestPeer, from store: inout TestStore) -> [String] {
        peer.isActive = false
        var actions = DeliveryActions<TestPeer>()
        _ = peerClosed(peer, into: &actions, next: { store.next() })
        return describe(actions)
    }

    /// The expiry timer of `generation` fired at `now`.
    mutating func expire(generation: UInt64, at now: NIODeadline) -> (sent: [String], timer: ExpiryTimerAction?) {
        var actions = DeliveryActions<TestPeer>()
        let timer = expire(generation: generation, now: now, into: &actions)
        return (describe(actions), timer)
    }
}

extension PubSubDelivery where Peer == TestPeer {
    /// A consume by `peer` with id `id`, subscribing to `topics` (nil: the previous set).
    @discardableResult
    mutating func consume(_ peer: TestPeer, _ id: String, topics: [String]?, wait: WaitLimit = .unlimited) -> [String] {
        var actions = DeliveryActions<TestPeer>()
        _ = consume(from: peer, reply: pull(id), topics: topics, wait: wait, into: &actions)
        return describe(actions)
    }

    /// Publishes a message with body `body` and topic `topic`; returns what was sent and the drop report.
    @discardableResult
    mutating func publish(_ body: String, topic: String?) -> (sent: [String], report: DropReport?) {
        var actions = DeliveryActions<TestPeer>()
        let report = publish(published(body, topic: topic), into: &actions)
        return (describe(actions), report)
    }
}

/// A message with body `body`, as a pub/sub publish carries it.
func published(_ body: String, topic: String? = nil) -> Message {
    var message = Message(method: "POST", uri: "/")
    message.topic = topic
    message.setBody(body)
    return message
}
