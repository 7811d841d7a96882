import DequeModule
import NIOCore
import ZbusKernel

/// A pub/sub subscription: its topics and the messages waiting for its next consume. A class, so that a publish
/// appends to its buffer in place: a struct copied out of the table and back copied the whole buffer every publish.
final class Subscription<Peer: DeliveryPeer> {
    let consumer: DeliveryConsumer<Peer>
    var peer: Peer { consumer.peer }
    @exclusivity(unchecked) var topics: Set<String>
    /// Messages waiting for the next consume, with the bytes each counts against the byte bound.
    @exclusivity(unchecked) var buffer: Deque<(message: Message, bytes: Int)> = []
    @exclusivity(unchecked) var bufferedBytes = 0

    init(consumer: DeliveryConsumer<Peer>, topics: Set<String>) {
        self.consumer = consumer
        self.topics = topics
    }
}

/// Pub/sub delivery of one MQ: every subscriber whose topics match gets a copy of each message published.
///
/// A subscriber names its topics on its consume (`topic: a,b`; `*` takes everything, and a consume without `topic`
/// keeps the previous set). A message reaches a subscriber whose consume is parked at once; otherwise it waits in
/// that subscriber's buffer, bounded in messages (`subscriber_buffer`) and bytes (`subscriber_buffer_bytes`): a full
/// buffer drops its oldest message, and the drops are counted. Nothing is stored, acknowledged or redelivered.
///
/// A value type driven under the MQ's lock; like ``PointToPointDelivery`` it appends what to send to `actions`.
struct PubSubDelivery<Peer: DeliveryPeer> {
    private(set) var roster: ConsumerRoster<Peer>
    private var subscriptions: [ObjectIdentifier: Subscription<Peer>] = [:]
    /// Messages a subscriber's buffer holds at most.
    let bufferLimit: Int
    /// Bytes a subscriber's buffer holds at most.
    let bufferBytes: Int
    /// Messages dropped from full buffers so far.
    private(set) var dropped: UInt64 = 0
    /// Copies handed to subscribers so far (a plain count under the MQ's lock, read by the monitor's sampler).
    private(set) var deliveredCount: UInt64 = 0

    /// Drops worth a warning: the subscriber that dropped last and the MQ's total so far.
    struct DropReport {
        let peer: Peer
        let total: UInt64
    }

    init(mq: String, maxParked: Int, bufferLimit: Int, bufferBytes: Int) {
        roster = ConsumerRoster(mq: mq, maxParked: maxParked)
        self.bufferLimit = bufferLimit
        self.bufferBytes = bufferBytes
    }

    /// Subscribers connected (`consumerCount`).
    var consumerCount: Int { roster.consumers.count }

    /// Messages waiting in all buffers (what `unconsumedMsgCount` reports for pub/sub).
    var bufferedCount: Int { subscriptions.values.reduce(0) { $0 + $1.buffer.count } }

    /// Every subscriber with its topics.
    var subscribers: [(peer: Peer, topics: Set<String>)] { subscriptions.values.map { ($0.peer, $0.topics) } }

    /// A consume from `peer`: subscribes it (to `topics`, or to those it had when nil), hands it the oldest buffered
    /// message if there is one, and ends or watches the consume as `wait` says.
    mutating func consume(from peer: Peer, reply: PullReply, topics: [String]?, wait: WaitLimit,
                          into actions: inout some DeliveryCollector<Peer>) -> ConsumeOutcome {
        let (consumer, isNew) = roster.consumer(for: peer)
        var outcome = ConsumeOutcome(isNewConsumer: isNew)
        let (pull, _) = roster.park(consumer, reply: reply, deadline: wait.deadline)
        let key = ObjectIdentifier(peer)
        let subscription: Subscription<Peer>
        if let known = subscriptions[key] {
            subscription = known
        } else {
            subscription = Subscription(consumer: consumer, topics: [])
            subscriptions[key] = subscription
        }
        if let topics { subscription.topics = Set(topics) }
        if let (message, bytes) = subscription.buffer.popFirst() {
            subscription.bufferedBytes -= bytes
            if let pull = roster.unpark(consumer) {
                deliveredCount &+= 1
                actions.append(.deliver(.message(message), to: peer, reply: pull.reply))
            }
        }
        outcome.timer = roster.settle(consumer, token: pull.token, wait: wait, into: &actions)
        return outcome
    }

    /// Publishes `message` to every active subscriber whose topics match it: handed over at once to a parked
    /// consume, buffered otherwise. Returns a report when drops are worth a warning (the first, then one per 1000).
    mutating func publish(_ message: Message, into actions: inout some DeliveryCollector<Peer>) -> DropReport? {
        let topic = message.topic
        // What a buffered copy counts against the byte bound: the copies share the message's storage, but each is
        // held for its subscriber as long as that one lags, so each counts in full.
        var bytes: Int?
        var report: DropReport?
        for subscription in subscriptions.values {
            // A message without a topic reaches `*` subscribers (zbus 6.3.0 dropped it).
            let matches = subscription.topics.contains("*") || (topic.map { subscription.topics.contains($0) } ?? false)
            guard matches, subscription.peer.isActive else { continue }
            if let pull = roster.unpark(subscription.consumer) {
                deliveredCount &+= 1
                actions.append(.deliver(.message(message), to: subscription.peer, reply: pull.reply))
                continue
            }
            let size = bytes ?? (MessageSerializer.estimatedHeadSize(message) + (message.body?.readableBytes ?? 0))
            bytes = size
            subscription.buffer.append((message, size))
            subscription.bufferedBytes += size
            var droppedNow: UInt64 = 0
            while subscription.buffer.count > bufferLimit || subscription.bufferedBytes > bufferBytes,
                let oldest = subscription.buffer.popFirst()
            {
                subscription.bufferedBytes -= oldest.bytes
                droppedNow += 1
            }
            guard droppedNow > 0 else { continue }
            let before = dropped
            dropped += droppedNow
            if before == 0 || before / 1000 != dropped / 1000 { report = DropReport(peer: subscription.peer, total: dropped) }
        }
        return report
    }

    /// `peer`'s connection closed: its subscription and buffer go.
    mutating func peerClosed(_ peer: Peer) {
        guard roster.remove(peer) != nil else { return }
        subscriptions.removeValue(forKey: ObjectIdentifier(peer))
    }

    /// The expiry timer of `generation` fired at `now` (see ``ConsumerRoster/expire(generation:now:into:)``).
    mutating func expire(generation: UInt64, now: NIODeadline, into actions: inout some DeliveryCollector<Peer>) -> ExpiryTimerAction? {
        roster.expire(generation: generation, now: now, into: &actions)
    }

    /// The MQ is removed: every parked consume ends with 404.
    mutating func close(into actions: inout some DeliveryCollector<Peer>) -> ExpiryTimerAction {
        roster.close(into: &actions)
    }
}
