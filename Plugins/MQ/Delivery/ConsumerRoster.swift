import HeapModule
import NIOCore

/// A peer that has consumed from an MQ: the messages handed to it and not yet acknowledged, and its parked consume.
///
/// A class, so that a parked pull carries it: a consume then costs one table lookup, not one to acknowledge and
/// another to record the delivery, and nothing is copied out of a table and back. An acknowledged consumer keeps its
/// (empty) array, whose storage the next delivery reuses. Guarded, like the state machine holding it, by the MQ's lock
/// (hence `@exclusivity(unchecked)`: the runtime's check of each access would only repeat what the lock guarantees).
final class DeliveryConsumer<Peer: DeliveryPeer> {
    let peer: Peer
    @exclusivity(unchecked) var held: [StoredMessage] = []
    /// The consume parked on this MQ, if any: one per peer, a new consume replaces it (its `id` wins).
    @exclusivity(unchecked) var pull: ParkedPull?

    init(peer: Peer) {
        self.peer = peer
    }
}

/// A consume waiting for a message.
struct ParkedPull {
    var reply: PullReply
    /// Unique per consume: tells this pull from an earlier one of the same peer (see ``ConsumerRoster``'s deadlines).
    var token: UInt64
    /// The token of the pull that first took the peer's place in line; a replacement keeps it.
    var ticket: UInt64
    /// When the consume's wait limit passes, if it has one.
    var deadline: NIODeadline?
    /// Whether the deadline is watched: only once the consume found nothing and stayed parked (most consumes of a busy
    /// MQ are answered at once, and need no watching).
    var watched = false
}

/// The consumers of one MQ, their parked consumes and their wait limits: what point-to-point and pub/sub delivery
/// share.
///
/// A value type driven by its owner under the MQ's lock. Times are passed in (``WaitLimit``, `expire(now:)`), and
/// the one expiry timer is the executor's: the roster says when to arm it (``ExpiryTimerAction``) and the executor
/// passes the armed generation back when it fires, so a superseded timer that fires anyway is told from the current.
struct ConsumerRoster<Peer: DeliveryPeer> {
    typealias Consumer = DeliveryConsumer<Peer>

    /// The MQ's name, for the replies that end a consume.
    let mq: String
    /// Parked consumes beyond this are refused with 429 (`max_parked_consumes`).
    let maxParked: Int
    /// Peers that have consumed and are still connected (the `consumerCount`), by object identity: cheaper to hash
    /// than a session id, and never reused while the table holds the peer.
    private(set) var consumers: [ObjectIdentifier: Consumer] = [:]
    /// Parked consumes, bounded by ``maxParked``.
    private(set) var parkedCount = 0
    private var nextToken: UInt64 = 0
    /// The wait limits of parked pulls, soonest first. An entry whose pull was answered, replaced or dropped stays
    /// until it reaches the top (or until stale entries outnumber live ones, when the heap is rebuilt): expiring
    /// costs in proportion to what expires, not to what is parked.
    private var deadlines = Heap<TimedPull>()
    /// Parked pulls with a watched wait limit (the live entries of `deadlines`).
    private(set) var timedCount = 0
    /// When the armed expiry timer fires, if one is armed.
    private(set) var timerDeadline: NIODeadline?
    /// The generation of the armed timer.
    private(set) var timerGeneration: UInt64 = 0

    /// A wait limit in `deadlines`; live while its consumer's pull still has its token.
    private struct TimedPull: Comparable {
        let deadline: NIODeadline
        let token: UInt64
        let consumer: Consumer

        var isLive: Bool { consumer.pull?.token == token }

        static func < (lhs: TimedPull, rhs: TimedPull) -> Bool {
            lhs.deadline != rhs.deadline ? lhs.deadline < rhs.deadline : lhs.token < rhs.token
        }

        static func == (lhs: TimedPull, rhs: TimedPull) -> Bool { lhs.deadline == rhs.deadline && lhs.token == rhs.token }
    }

    init(mq: String, maxParked: Int) {
        self.mq = mq
        self.maxParked = maxParked
    }

    /// The consumer of `peer`, made on its first consume.
    mutating func consumer(for peer: Peer) -> (consumer: Consumer, isNew: Bool) {
        let key = ObjectIdentifier(peer)
        if let known = consumers[key] { return (known, false) }
        let consumer = Consumer(peer: peer)
        consumers[key] = consumer
        return (consumer, true)
    }

    /// Forgets `peer` (its connection closed) and its parked consume; the caller takes care of what it held.
    mutating func remove(_ peer: Peer) -> Consumer? {
        guard let consumer = consumers.removeValue(forKey: ObjectIdentifier(peer)) else { return nil }
        _ = unpark(consumer)
        return consumer
    }

    /// Parks a consume for `consumer`, replacing its parked one in place if it has one (keeping its place in line).
    /// Returns the new pull and whether it took a new place (the caller puts it in line).
    mutating func park(_ consumer: Consumer, reply: PullReply, deadline: NIODeadline?) -> (pull: ParkedPull, isNewPlace: Bool) {
        nextToken += 1
        var pull = ParkedPull(reply: reply, token: nextToken, ticket: nextToken, deadline: deadline)
        if let previous = consumer.pull {
            pull.ticket = previous.ticket
            if previous.watched { timedCount -= 1 }
            consumer.pull = pull
            return (pull, false)
        }
        parkedCount += 1
        consumer.pull = pull
        return (pull, true)
    }

    /// Takes the parked pull away from `consumer` (answered, expired or dropped); its entries in line and in the
    /// deadlines become tombstones.
    mutating func unpark(_ consumer: Consumer) -> ParkedPull? {
        guard let pull = consumer.pull else { return nil }
        consumer.pull = nil
        parkedCount -= 1
        if pull.watched { timedCount -= 1 }
        return pull
    }

    /// After delivery was tried: ends the consume with token `token` if it is still parked and may not wait (a limit
    /// of 0, or too many parked), or watches its wait limit.
    mutating func settle(_ consumer: Consumer, token: UInt64, wait: WaitLimit,
                         into actions: inout some DeliveryCollector<Peer>) -> ExpiryTimerAction? {
        // Answered already, or still parked because nothing was there for it.
        guard let pull = consumer.pull, pull.token == token else { return nil }
        switch wait {
        case .immediate:
            _ = unpark(consumer)
            actions.append(.end(.nothingCame, mq: mq, to: consumer.peer, reply: pull.reply))
            return nil
        case _ where parkedCount > maxParked:
            _ = unpark(consumer)
            actions.append(.end(.tooManyParked(limit: maxParked), mq: mq, to: consumer.peer, reply: pull.reply))
            return nil
        case .until(let deadline, let now):
            return watch(consumer, until: deadline, now: now)
        case .unlimited:
            return nil
        }
    }

    /// Watches the wait limit of the pull `consumer` keeps parked.
    private mutating func watch(_ consumer: Consumer, until deadline: NIODeadline, now: NIODeadline) -> ExpiryTimerAction? {
        guard let token = consumer.pull?.token else { return nil }
        consumer.pull?.watched = true
        timedCount += 1
        deadlines.insert(TimedPull(deadline: deadline, token: token, consumer: consumer))
        if deadlines.count > 2 * timedCount + 64 {
            // Mostly stale: rebuilt, O(1) amortized over the pulls that left it stale.
            deadlines = Heap(deadlines.unordered.filter(\.isLive))
        }
        // Re-armed only for a limit that would otherwise be missed by more than the granularity: a stream of short
        // limits then arms one timer per granularity, not one per consume.
        if timerDeadline.map({ deadline + WaitLimit.expiryGranularity < $0 }) ?? true { return arm(at: deadline, now: now) }
        return nil
    }

    /// Arms the expiry timer for `deadline`, no sooner than the granularity allows, superseding the armed one.
    private mutating func arm(at deadline: NIODeadline, now: NIODeadline) -> ExpiryTimerAction {
        let at = max(deadline, now + WaitLimit.expiryGranularity)
        timerGeneration &+= 1
        timerDeadline = at
        return .arm(at: at, generation: timerGeneration)
    }

    /// The expiry timer of `generation` fired at `now`: ends the parked consumes whose wait limit has passed (204),
    /// and says when to fire next if any pull still has a limit.
    mutating func expire(generation: UInt64, now: NIODeadline, into actions: inout some DeliveryCollector<Peer>) -> ExpiryTimerAction? {
        let current = generation == timerGeneration
        if current { timerDeadline = nil }
        while let soonest = deadlines.min, soonest.deadline <= now {
            let entry = deadlines.removeMin()
            guard entry.isLive, let pull = unpark(entry.consumer) else { continue }
            actions.append(.end(.nothingCame, mq: mq, to: entry.consumer.peer, reply: pull.reply))
        }
        if timedCount == 0 { deadlines = Heap() }
        // A superseded timer leaves the arming to the current one.
        if current, timerDeadline == nil, let next = deadlines.min { return arm(at: next.deadline, now: now) }
        return nil
    }

    /// Ends `consumer`'s parked consume, if any, because the MQ is removed.
    mutating func endBecauseRemoved(_ consumer: Consumer, into actions: inout some DeliveryCollector<Peer>) {
        guard let pull = unpark(consumer) else { return }
        actions.append(.end(.queueRemoved, mq: mq, to: consumer.peer, reply: pull.reply))
    }

    /// The MQ is removed: ends every consume still parked (404) and drops every wait limit.
    mutating func close(into actions: inout some DeliveryCollector<Peer>) -> ExpiryTimerAction {
        for consumer in consumers.values { endBecauseRemoved(consumer, into: &actions) }
        deadlines = Heap()
        timerDeadline = nil
        timerGeneration &+= 1
        return .cancel
    }
}
