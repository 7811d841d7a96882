import DequeModule
import HeapModule
#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOConcurrencyHelpers
import NIOCore
import ZbusKernel
import ZbusStore

/// One MQ: its definition, its stored messages, the consumers parked on it and the messages they hold.
///
/// All state sits behind one lock; handlers on any event loop call in, and the messages to send are collected under
/// the lock and sent after it is released.
///
/// Delivery is at-least-once: a message handed to a consumer stays *in flight* until that consumer's next `consume`
/// on this MQ acknowledges it. If the consumer's connection drops first, the message goes back to the head of the
/// queue and the next consumer gets it. The store's read cursor only moves over acknowledged messages.
final class MessageQueue: @unchecked Sendable {
    let name: String
    /// Guards every `var` below. They are marked `@exclusivity(unchecked)`: the lock already keeps threads apart, and
    /// no access spans a call that could come back into this queue (messages are sent after the lock is released),
    /// so the runtime's check of each access (a thread-local lookup and a table insertion, several per message) would
    /// only repeat what the lock guarantees.
    private let lock = NIOLock()
    @exclusivity(unchecked) private var definition: MQDefinition
    private let backend: any QueueBackend
    let durableQueue: DurableQueue?
    private let logger: Logger

    // Point-to-point state.
    @exclusivity(unchecked) private var redeliveries: Deque<StoredMessage> = []
    /// Consumers waiting for a message, first come first served, with the ticket of the pull they parked. An entry
    /// whose consumer no longer has a pull with that ticket (it expired, or its connection closed) is a tombstone:
    /// skipped when it reaches the front, and compacted away once tombstones outnumber the live entries, so that
    /// neither a replacement nor an expiry searches the queue.
    @exclusivity(unchecked) private var pulls: Deque<(consumer: Consumer, ticket: UInt64)> = []
    /// Parked pulls (point-to-point and pub/sub), bounded by `maxParkedConsumes`.
    @exclusivity(unchecked) private var parkedCount = 0
    private let maxParkedConsumes: Int
    private let sessionIndex: SessionQueueIndex?
    /// The sequences handed out from the backend and not yet acknowledged, ascending (the backend hands them out in
    /// order), each marked once acknowledged: an acknowledgement finds its sequence by binary search and the front is
    /// trimmed of marked ones, so acknowledging costs O(log n), not a scan of everything in flight.
    @exclusivity(unchecked) private var outstanding: Deque<(sequence: UInt64, acknowledged: Bool)> = []
    /// Marked entries of `outstanding` not yet trimmed. Behind one message a consumer holds for ever, every later
    /// acknowledgement would stay in the deque; once marked ones are the majority they are dropped in one pass, so
    /// the deque stays within twice what is in flight at an amortized O(1) per acknowledgement.
    @exclusivity(unchecked) private var acknowledgedOutstanding = 0
    /// Messages held by consumers (what `inFlightMsgCount` reports and `max_length` counts), kept as a count so that
    /// a produce to a bounded MQ does not add up every consumer's holdings.
    @exclusivity(unchecked) private var inFlightCount = 0
    @exclusivity(unchecked) private var highestHandedOut: UInt64 = 0
    @exclusivity(unchecked) private var committed: UInt64 = 0

    // Consumers that have consumed and are still connected (the `consumerCount`), with what each holds. Holding the
    // session keeps its object identifier (the key of these tables, cheaper to hash than the session's UUID) from
    // being reused.
    @exclusivity(unchecked) private var consumers: [SessionKey: Consumer] = [:]
    // Pub/sub state.
    @exclusivity(unchecked) private var subscribers: [SessionKey: Subscriber] = [:]
    private let subscriberBufferLimit: Int
    private let subscriberBufferBytes: Int

    // Produces collected during one event-loop tick, per loop, written to the store in one batch at the end of it.
    // One slot per event loop that ever produced here (a handful): a linear search beats hashing, and a slot keeps
    // its arrays' capacity from tick to tick.
    @exclusivity(unchecked) private var pendingAppends: [PendingSlot] = []
    @exclusivity(unchecked) private var pendingCount = 0
    // The acknowledged bound not yet handed to the store (written once per tick, not once per consume).
    @exclusivity(unchecked) private var commitScheduled = false

    /// One loop's accepted produces: the messages apart from what is done once they are stored, so that the
    /// messages go to the backend as they are, without being copied into an array of their own.
    private struct PendingBatch {
        var messages: [Message] = []
        var entries: [PendingAppend] = []

        init() {}

        /// An empty batch with room for `capacity` messages (the size of the loop's previous batch).
        init(reservingCapacity capacity: Int) {
            messages.reserveCapacity(capacity)
            entries.reserveCapacity(capacity)
        }

        var count: Int { messages.count }
        var isEmpty: Bool { messages.isEmpty }
    }

    private struct PendingSlot {
        let loop: ObjectIdentifier
        var batch = PendingBatch()
        /// Whether a flush of this slot is scheduled on its loop.
        var scheduled = false
    }

    private struct PendingAppend {
        let key: String?
        let keyGroup: String
        let receipt: ProduceReceipt
    }

    /// Who hears about a produce once it is stored: the producer's session and the request's `id` and `mq`. A plain
    /// value rather than a callback, so accepting a message allocates nothing for it.
    struct ProduceReceipt: Sendable {
        let session: Session?
        let id: String?
        let mq: String?
        let wantsAck: Bool

        /// Nobody to tell (the copy a slave MQ gets).
        static let none = ProduceReceipt(session: nil, id: nil, mq: nil, wantsAck: false)

        /// The message is durable under the fsync policy as of `time` (milliseconds): acknowledge if asked to.
        func stored(at time: Int64) {
            if wantsAck, let session { session.send(.acknowledgement(id: id, mq: mq, time: time)) }
        }

        /// ``stored(at:)`` for one of many receipts answered together on the producers' loop.
        func stored(at time: Int64, via sends: inout BatchedSends) {
            if wantsAck, let session { sends.send(.acknowledgement(id: id, mq: mq, time: time), to: session) }
        }

        /// The store refused the message: the producer hears it, acknowledgement asked for or not.
        func failed(_ error: QueueStoreError, queue: String) {
            session?.send(Message.reply(status: 500, body: "MQ(\(queue)) store failure: \(error)", id: id, mq: mq))
        }
    }

    @exclusivity(unchecked) private var keyFilter: KeyFilter
    @exclusivity(unchecked) private(set) var slaves: [String: MessageQueue] = [:]
    @exclusivity(unchecked) private var lastUpdate: Int64
    @exclusivity(unchecked) private var nextPullToken: UInt64 = 0
    /// The wait limits of parked pulls, soonest first. An entry whose pull was answered, replaced or dropped stays
    /// until it reaches the top (or until stale entries outnumber live ones, when the heap is rebuilt): expiring
    /// costs in proportion to what expires, not to what is parked.
    @exclusivity(unchecked) private var deadlines = Heap<TimedPull>()
    /// Parked pulls with a wait limit (the live entries of `deadlines`).
    @exclusivity(unchecked) private var timedCount = 0
    /// The one timer, armed for the soonest wait limit while any pull has one.
    @exclusivity(unchecked) private var expiryTimer: Scheduled<Void>?
    @exclusivity(unchecked) private var expiryTimerAt: NIODeadline?
    /// Tells a superseded timer that fires anyway from the current one.
    @exclusivity(unchecked) private var expiryTimerGeneration: UInt64 = 0
    /// The least spacing of expiry timer firings, and so the precision of `timeout`: a timer is not re-armed for
    /// every consume (an MQ-RPC worker parks a consume for every call), and while answered pulls leave stale
    /// entries behind, the timer fires at most this often to clear them.
    private static let expiryGranularity = TimeAmount.milliseconds(20)
    @exclusivity(unchecked) private var droppedForSlowSubscribers: UInt64 = 0

    /// The key of the per-session tables: the session object's identity.
    typealias SessionKey = ObjectIdentifier

    struct ConsumerInfo {
        let remoteAddress: String
        var topics: [String]
    }

    /// A session that has consumed from this MQ, and the messages handed to it and not yet acknowledged. A class, so
    /// that a parked pull carries it: a consume then costs one table lookup, not one to acknowledge and another to
    /// record the delivery. An acknowledged consumer keeps its (empty) array, whose storage the next delivery reuses.
    private final class Consumer {
        let session: Session
        // Guarded by the MQ's lock, like the table that holds the consumer.
        @exclusivity(unchecked) var held: [StoredMessage] = []
        /// The consume parked on this MQ, if any: one per session, a new consume replaces it (its `id` wins).
        @exclusivity(unchecked) var pull: Pull?

        init(session: Session) {
            self.session = session
        }
    }

    private struct Pull {
        var requestId: String?
        /// Unique per consume: tells this pull from an earlier one of the same session (see `deadlines`).
        var token: UInt64
        /// The token of the pull that first took the session's place in `pulls`; a replacement keeps it.
        var ticket: UInt64
        /// When the consume's wait limit passes (the `timeout` header), if it had one.
        var deadline: NIODeadline?
        /// Whether the deadline is in `deadlines`: only once the consume found nothing and stayed parked (most
        /// consumes of a busy MQ are answered at once, and need no watching).
        var watched = false
        var closeAfterReply: Bool
    }

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

    /// A pub/sub subscription. A class, so that a publish appends to its buffer in place: a struct copied out of the
    /// table and back copied the whole buffer on every publish.
    private final class Subscriber {
        let consumer: Consumer
        var session: Session { consumer.session }
        @exclusivity(unchecked) var topics: Set<String>
        /// Messages waiting for the next consume, with the bytes each counts against `subscriber_buffer_bytes`.
        @exclusivity(unchecked) var buffer: Deque<(message: Message, bytes: Int)> = []
        @exclusivity(unchecked) var bufferedBytes = 0

        init(consumer: Consumer, topics: Set<String>) {
            self.consumer = consumer
            self.topics = topics
        }
    }

    /// What one operation produced for the caller to send once the lock is released.
    struct Deliveries {
        // The first one is held inline: a call delivers one message or none nearly always, and an array would be
        // allocated for that one.
        private var first: (Session, Outgoing)?
        private var rest: [(Session, Outgoing)] = []

        fileprivate mutating func append(_ message: Message, to session: Session) {
            append(.message(message), to: session)
        }

        fileprivate mutating func append(_ outgoing: Outgoing, to session: Session) {
            if first == nil { first = (session, outgoing) } else { rest.append((session, outgoing)) }
        }

        /// Sends everything, in order.
        func send() {
            guard let (session, outgoing) = first else { return }
            session.send(outgoing)
            for (session, outgoing) in rest { session.send(outgoing) }
        }
    }

    init(definition: MQDefinition, backend: any QueueBackend, durableQueue: DurableQueue?, limits: Limits, logger: Logger) {
        self.name = definition.name
        self.definition = definition
        self.mode = definition.modeBits
        self.accessToken = definition.accessToken
        self.backend = backend
        self.durableQueue = durableQueue
        self.keyFilter = KeyFilter(limit: limits.keyLimit, maxKeys: limits.maxKeys, maxGroups: limits.maxKeyGroups,
                                   budget: limits.keyBudget)
        self.subscriberBufferLimit = limits.subscriberBuffer
        self.subscriberBufferBytes = limits.subscriberBufferBytes
        self.maxParkedConsumes = limits.maxParkedConsumes
        self.sessionIndex = limits.sessionIndex
        self.lastUpdate = Clock.milliseconds()
        var logger = logger
        logger[metadataKey: "mq"] = "\(definition.name)"
        self.logger = logger
    }

    /// What one MQ may hold (from the `mq` section of the node file).
    struct Limits: Sendable {
        var keyLimit = 1_000_000
        var maxKeys = 1_000_000
        var maxKeyGroups = 10_000
        var subscriberBuffer = 10_000
        var subscriberBufferBytes = 64 << 20
        var maxParkedConsumes = 100_000
        /// The node-wide budget of key bytes (`max_key_bytes`) every MQ's key filter draws from.
        var keyBudget: KeyMemoryBudget? = nil
        /// Where a session's first consume from this MQ is noted, so its close visits only its MQs.
        var sessionIndex: SessionQueueIndex? = nil
    }

    /// The mode bits (fixed at creation).
    let mode: MQMode
    /// The token producers and consumers must present (fixed at creation, so read without the lock).
    let accessToken: String
    var currentDefinition: MQDefinition { lock.withLock { definition } }
    private var isPubSub: Bool { mode.contains(.pubSub) }

    // MARK: - Produce

    /// Why a produce was refused.
    enum ProduceRefusal: Error {
        case serviceDown
        case duplicateKey
        /// A key in a new key group, and the MQ already keeps `limit` groups (`max_key_groups`).
        case tooManyKeyGroups(limit: Int)
        /// A key, and the node's keys already hold `limit` bytes (`max_key_bytes`).
        case keyMemory(limit: Int)
        case full(limit: Int64)
        case store(QueueStoreError)
    }

    /// Accepts `message` (a produce request: `cmd` and `ack` are left out when it is stored or delivered) for
    /// storing, or refuses it at once.
    ///
    /// Accepted messages are written to the store at the end of the current tick of `eventLoop`, together with the
    /// other messages the loop accepted meanwhile (one write for all of them), then delivered; `receipt` hears
    /// once the message is durable under the fsync policy. Messages of one connection keep their order.
    func produce(_ message: Message, key: String?, keyGroup: String, on eventLoop: any EventLoop,
                 receipt: ProduceReceipt) throws(ProduceRefusal) -> Deliveries {
        var deliveries = Deliveries()
        lock.lock()
        let slaveTargets: [MessageQueue]
        var scheduleFlush = false
        var fannedOut = false
        do {
            defer { lock.unlock() }
            if mode.contains(.rpc) && consumers.isEmpty && subscribers.isEmpty { throw .serviceDown }
            if let key {
                switch keyFilter.add(key, group: keyGroup) {
                case .added: break
                case .duplicate: throw .duplicateKey
                case .tooManyGroups: throw .tooManyKeyGroups(limit: keyFilter.maxGroups)
                case .outOfMemory: throw .keyMemory(limit: keyFilter.budget?.limit ?? 0)
                }
            }
            if isPubSub {
                lastUpdate = Clock.milliseconds()
                fanOutLocked(message, into: &deliveries)
                fannedOut = true
            } else {
                if definition.maxLength > 0, unconsumedCountLocked >= definition.maxLength {
                    if let key { _ = keyFilter.remove(key, group: keyGroup) }
                    throw .full(limit: definition.maxLength)
                }
                let loop = ObjectIdentifier(eventLoop)
                let entry = PendingAppend(key: key, keyGroup: keyGroup, receipt: receipt)
                let slot: Int
                if let index = pendingAppends.firstIndex(where: { $0.loop == loop }) {
                    slot = index
                } else {
                    pendingAppends.append(PendingSlot(loop: loop))
                    slot = pendingAppends.count - 1
                }
                if !pendingAppends[slot].scheduled {
                    pendingAppends[slot].scheduled = true
                    scheduleFlush = true
                }
                pendingAppends[slot].batch.messages.append(message)
                pendingAppends[slot].batch.entries.append(entry)
                pendingCount += 1
            }
            slaveTargets = slaves.isEmpty ? [] : Array(slaves.values)
        }
        if fannedOut { receipt.stored(at: Clock.milliseconds()) }
        if scheduleFlush {
            eventLoop.execute { self.flushAppends(of: eventLoop) }
        }
        for slave in slaveTargets {
            // A slave gets a copy of every message produced to its master, its headers untouched.
            do {
                try slave.produce(message, key: nil, keyGroup: "", on: eventLoop, receipt: .none).send()
            } catch {
                logger.warning("copy to slave MQ failed", metadata: ["slave": "\(slave.name)", "error": "\(error)"])
            }
        }
        return deliveries
    }

    /// Writes what one event loop accepted during its tick, then delivers and acknowledges.
    ///
    /// The durable store orders and locks its own appends, so the write (a system call) happens outside this MQ's
    /// lock and consumers on other loops are not held up by it. Batches of one loop never overtake each other: the
    /// loop runs one flush at a time and accepts nothing while it does.
    private func flushAppends(of eventLoop: any EventLoop) {
        let loop = ObjectIdentifier(eventLoop)
        let writeUnlocked = backend.isThreadSafe
        let acknowledgesLater = backend.acknowledgesLater
        var failure: QueueStoreError?
        var deliveries = Deliveries()
        let batch: PendingBatch = lock.withLock {
            guard let slot = pendingAppends.firstIndex(where: { $0.loop == loop }) else { return PendingBatch() }
            let batch = pendingAppends[slot].batch
            pendingAppends[slot].batch = PendingBatch(reservingCapacity: batch.count)
            pendingAppends[slot].scheduled = false
            if !writeUnlocked, !batch.isEmpty { failure = write(batch, acknowledgesLater: acknowledgesLater, on: eventLoop) }
            return batch
        }
        guard !batch.isEmpty else { return }
        if writeUnlocked { failure = write(batch, acknowledgesLater: acknowledgesLater, on: eventLoop) }
        // One clock reading for the whole batch: the MQ's last update and the time every acknowledgement carries.
        let storedAt = Clock.milliseconds()
        lock.withLock {
            pendingCount -= batch.count
            lastUpdate = storedAt
            if failure != nil {
                for entry in batch.entries { if let key = entry.key { _ = keyFilter.remove(key, group: entry.keyGroup) } }
            }
            dispatchLocked(into: &deliveries)
        }
        if let failure {
            logger.error("store append failed", metadata: ["error": "\(failure)", "messages": "\(batch.count)"])
            for entry in batch.entries { entry.receipt.failed(failure, queue: name) }
        } else if !acknowledgesLater {
            // One flush per producer for the whole batch, not one scheduled task each.
            var sends = BatchedSends(capacity: batch.count)
            for entry in batch.entries { entry.receipt.stored(at: storedAt, via: &sends) }
            sends.finish()
        }
        deliveries.send()
    }

    /// Hands `batch` to the store. With group commit, the acknowledgements go out once the sync that covers the batch
    /// is done: as one task on `eventLoop` (the producers' loop: a batch holds what one loop accepted) that sends them
    /// all and flushes each producer once, rather than a task and a wake-up of the loop per message.
    private func write(_ batch: PendingBatch, acknowledgesLater: Bool, on eventLoop: any EventLoop) -> QueueStoreError? {
        var whenDurable: (@Sendable (Result<Void, QueueStoreError>) -> Void)? = nil
        if acknowledgesLater {
            let receipts = batch.entries.map(\.receipt)
            let name = self.name
            whenDurable = { result in
                switch result {
                case .success:
                    eventLoop.execute {
                        let durableAt = Clock.milliseconds()
                        var sends = BatchedSends(capacity: receipts.count)
                        for receipt in receipts { receipt.stored(at: durableAt, via: &sends) }
                        sends.finish()
                    }
                case .failure(let error):
                    for receipt in receipts { receipt.failed(error, queue: name) }
                }
            }
        }
        do throws(QueueStoreError) {
            try backend.appendBatch(batch.messages, onDurable: whenDurable)
            return nil
        } catch {
            return error
        }
    }

    // MARK: - Consume

    /// Parks a pull for `session` (or answers it at once), acknowledging what the session held.
    ///
    /// - Parameters:
    ///   - requestId: the consume's `id`.
    ///   - topics: pub/sub topics (`topic` header), or nil to keep the previous set.
    ///   - timeoutMilliseconds: a server-side wait limit; when it passes with nothing delivered the session gets a 204.
    func consume(session: Session, requestId: String?, topics: [String]?, timeoutMilliseconds: Int64?, closeAfterReply: Bool) -> Deliveries {
        // The lock is taken without a closure: `deliveries` captured by one was copied out on return.
        var deliveries = Deliveries()
        lock.lock()
        defer { lock.unlock() }
        let key = SessionKey(session)
        let consumer: Consumer
        if let known = consumers[key] {
            consumer = known
            acknowledgeLocked(consumer, eventLoop: session.eventLoop)
        } else {
            consumer = Consumer(session: session)
            consumers[key] = consumer
            // Lock order: this MQ's lock, then the index's (which never calls out).
            sessionIndex?.note(session, consumesFrom: self)
        }
        nextPullToken += 1
        let token = nextPullToken
        let deadline = timeoutMilliseconds.flatMap { $0 > 0 ? NIODeadline.now() + .milliseconds($0) : nil }
        let pull = Pull(requestId: requestId, token: token, ticket: token, deadline: deadline, closeAfterReply: closeAfterReply)
        parkLocked(consumer, pull)
        if isPubSub {
            let subscriber: Subscriber
            if let known = subscribers[key] {
                subscriber = known
            } else {
                subscriber = Subscriber(consumer: consumer, topics: [])
                subscribers[key] = subscriber
            }
            if let topics { subscriber.topics = Set(topics) }
            deliverBufferedLocked(subscriber, into: &deliveries)
        } else {
            dispatchLocked(into: &deliveries)
        }
        // Still parked: nothing was there for it.
        if consumer.pull?.token == token {
            if timeoutMilliseconds == 0 {
                // A limit of 0 means "only if something is there": answered now.
                _ = unparkLocked(consumer)
                deliveries.append(Self.nothingCame(to: pull, mq: name), to: session)
            } else if parkedCount > maxParkedConsumes {
                _ = unparkLocked(consumer)
                var reply = Message(status: 429, body: ByteBuffer(
                    string: "MQ(\(name)) parked consume limit reached: \(maxParkedConsumes) consumes waiting (mq.max_parked_consumes)"))
                reply.mq = name
                reply.id = requestId
                reply.closeRequested = closeAfterReply
                deliveries.append(reply, to: session)
            } else if let deadline {
                watchLocked(consumer, until: deadline, on: session.eventLoop)
            }
        }
        return deliveries
    }

    /// Parks `pull` for `consumer`, replacing its parked pull in place if it has one (keeping its place in line).
    private func parkLocked(_ consumer: Consumer, _ pull: Pull) {
        var pull = pull
        if let previous = consumer.pull {
            pull.ticket = previous.ticket
            if previous.watched { timedCount -= 1 }
            consumer.pull = pull
        } else {
            parkedCount += 1
            consumer.pull = pull
            if !isPubSub { pulls.append((consumer, pull.ticket)) }
        }
    }

    /// Watches the wait limit of the pull `consumer` keeps parked.
    private func watchLocked(_ consumer: Consumer, until deadline: NIODeadline, on eventLoop: any EventLoop) {
        guard let token = consumer.pull?.token else { return }
        consumer.pull?.watched = true
        timedCount += 1
        deadlines.insert(TimedPull(deadline: deadline, token: token, consumer: consumer))
        compactDeadlinesLocked()
        // Re-armed only for a limit that would otherwise be missed by more than the granularity: a stream of short
        // limits then arms one timer per granularity, not one per consume.
        if expiryTimerAt.map({ deadline + Self.expiryGranularity < $0 }) ?? true { armExpiryTimerLocked(at: deadline, on: eventLoop) }
    }

    /// Takes the parked pull away from `consumer` (answered, expired or dropped); its entries in `pulls` and
    /// `deadlines` become tombstones.
    private func unparkLocked(_ consumer: Consumer) -> Pull? {
        guard let pull = consumer.pull else { return nil }
        consumer.pull = nil
        parkedCount -= 1
        if pull.watched { timedCount -= 1 }
        if pulls.count > 2 * parkedCount + 16 {
            pulls.removeAll { $0.consumer.pull?.ticket != $0.ticket }
        }
        return pull
    }

    /// Rebuilds `deadlines` once most of it is stale: O(1) amortized over the pulls that left it stale.
    private func compactDeadlinesLocked() {
        guard deadlines.count > 2 * timedCount + 64 else { return }
        deadlines = Heap(deadlines.unordered.filter(\.isLive))
    }

    /// Arms the expiry timer for `deadline` (no sooner than the granularity allows), superseding the armed one.
    private func armExpiryTimerLocked(at deadline: NIODeadline, on eventLoop: any EventLoop) {
        expiryTimer?.cancel()
        let at = max(deadline, NIODeadline.now() + Self.expiryGranularity)
        expiryTimerGeneration &+= 1
        let generation = expiryTimerGeneration
        expiryTimerAt = at
        expiryTimer = eventLoop.scheduleTask(deadline: at) { self.expireDuePulls(generation: generation, on: eventLoop) }
    }

    /// Answers the parked pulls whose wait limit has passed with 204 (nothing came), and arms the timer for the next
    /// wait limit if any pull still has one.
    private func expireDuePulls(generation: UInt64, on eventLoop: any EventLoop) {
        var expired: [(Session, Pull)] = []
        lock.withLock {
            let current = generation == expiryTimerGeneration
            if current {
                expiryTimer = nil
                expiryTimerAt = nil
            }
            let now = NIODeadline.now()
            while let soonest = deadlines.min, soonest.deadline <= now {
                let entry = deadlines.removeMin()
                guard entry.isLive, let pull = unparkLocked(entry.consumer) else { continue }
                expired.append((entry.consumer.session, pull))
            }
            if timedCount == 0 { deadlines = Heap() }
            // A superseded timer leaves the arming to the current one.
            if current, expiryTimerAt == nil, let next = deadlines.min {
                armExpiryTimerLocked(at: next.deadline, on: eventLoop)
            }
        }
        for (session, pull) in expired { session.send(Self.nothingCame(to: pull, mq: name)) }
    }

    /// The 204 that ends a pull whose wait limit passed with nothing delivered.
    private static func nothingCame(to pull: Pull, mq: String) -> Message {
        var reply = Message(status: 204)
        reply.mq = mq
        reply.id = pull.requestId
        reply.closeRequested = pull.closeAfterReply
        return reply
    }

    /// A connection closed: forget its pulls and subscription, and put the messages it held back at the head.
    func sessionClosed(_ session: Session) -> Deliveries {
        var deliveries = Deliveries()
        let key = SessionKey(session)
        lock.withLock {
            guard let consumer = consumers.removeValue(forKey: key) else { return }
            subscribers.removeValue(forKey: key)
            _ = unparkLocked(consumer)
            let held = consumer.held
            consumer.held.removeAll()
            if !held.isEmpty {
                inFlightCount -= held.count
                logger.debug("redelivering messages of a closed consumer", metadata: ["count": "\(held.count)"])
                for message in held.reversed() { redeliveries.prepend(message) }
                dispatchLocked(into: &deliveries)
            }
        }
        return deliveries
    }

    // MARK: - Dispatch (lock held)

    private func dispatchLocked(into deliveries: inout Deliveries) {
        while let first = pulls.first {
            let consumer = first.consumer
            guard let pull = consumer.pull, pull.ticket == first.ticket else {
                pulls.removeFirst()  // A tombstone.
                continue
            }
            guard consumer.session.isActive else {
                pulls.removeFirst()
                _ = unparkLocked(consumer)
                continue
            }
            guard let stored = redeliveries.popFirst() ?? nextFromBackendLocked() else { break }
            pulls.removeFirst()
            _ = unparkLocked(consumer)
            consumer.held.append(stored)
            inFlightCount += 1
            switch stored.payload {
            case .message(let message):
                deliveries.append(message.delivered(requestId: pull.requestId, close: pull.closeAfterReply), to: consumer.session)
            case .record(let record):
                deliveries.append(.delivery(record: record, requestId: pull.requestId, close: pull.closeAfterReply), to: consumer.session)
            }
        }
    }

    private func nextFromBackendLocked() -> StoredMessage? {
        guard let stored = backend.next() else { return nil }
        if let last = outstanding.last, stored.sequence < last.sequence {
            // Not expected (the backend hands out in order), but the order must hold for the binary search.
            outstanding.insert((stored.sequence, false), at: outstandingIndex(of: stored.sequence))
        } else {
            outstanding.append((stored.sequence, false))
        }
        highestHandedOut = max(highestHandedOut, stored.sequence)
        return stored
    }

    /// The index of the first outstanding entry whose sequence is not below `sequence`.
    private func outstandingIndex(of sequence: UInt64) -> Int {
        var low = 0
        var high = outstanding.count
        while low < high {
            let middle = (low + high) / 2
            if outstanding[middle].sequence < sequence { low = middle + 1 } else { high = middle }
        }
        return low
    }

    private func acknowledgeLocked(_ consumer: Consumer, eventLoop: any EventLoop) {
        guard !consumer.held.isEmpty else { return }
        for stored in consumer.held {
            let index = outstandingIndex(of: stored.sequence)
            if index < outstanding.count, outstanding[index].sequence == stored.sequence, !outstanding[index].acknowledged {
                outstanding[index].acknowledged = true
                acknowledgedOutstanding += 1
            }
        }
        inFlightCount -= consumer.held.count
        consumer.held.removeAll(keepingCapacity: true)
        while let first = outstanding.first, first.acknowledged {
            outstanding.removeFirst()
            acknowledgedOutstanding -= 1
        }
        if acknowledgedOutstanding > 64, acknowledgedOutstanding * 2 > outstanding.count {
            outstanding.removeAll(where: \.acknowledged)
            acknowledgedOutstanding = 0
        }
        let bound = outstanding.first.map { $0.sequence - 1 } ?? highestHandedOut
        if bound > committed {
            committed = bound
            if !commitScheduled {
                // One cursor write per tick for all the acknowledgements it brought, not one per consume.
                commitScheduled = true
                eventLoop.execute { self.flushCommit() }
            }
        }
    }

    /// Before a clean shutdown: writes the cursor move still pending, and tells the store which records above the
    /// cursor consumers acknowledged while an older one is still out (held, or waiting to be delivered again), so
    /// that a restart delivers only what was never acknowledged.
    func noteAcknowledgementsForRestart() {
        guard let durableQueue else { return }
        lock.withLock {
            backend.commit(through: committed)
            var acknowledged: [ClosedRange<UInt64>] = []
            var start = committed + 1
            for entry in outstanding where !entry.acknowledged && entry.sequence >= start {
                if entry.sequence > start { acknowledged.append(start...(entry.sequence - 1)) }
                start = entry.sequence + 1
            }
            if start <= highestHandedOut { acknowledged.append(start...highestHandedOut) }
            durableQueue.noteAcknowledged(acknowledged)
        }
    }

    private func flushCommit() {
        lock.withLock {
            commitScheduled = false
            backend.commit(through: committed)
        }
    }

    private func fanOutLocked(_ message: Message, into deliveries: inout Deliveries) {
        let topic = message.topic
        // What a buffered copy counts against `subscriber_buffer_bytes`: the copies share the message's storage,
        // but each is held for its subscriber as long as that one lags, so each counts in full.
        var bytes: Int?
        for subscriber in subscribers.values {
            // A message without a topic reaches `*` subscribers (zbus 6.3.0 dropped it).
            let matches = subscriber.topics.contains("*") || (topic.map { subscriber.topics.contains($0) } ?? false)
            guard matches, subscriber.session.isActive else { continue }
            if let pull = unparkLocked(subscriber.consumer) {
                deliveries.append(message.delivered(requestId: pull.requestId, close: pull.closeAfterReply), to: subscriber.session)
                continue
            }
            let size = bytes ?? (MessageSerializer.estimatedHeadSize(message) + (message.body?.readableBytes ?? 0))
            bytes = size
            subscriber.buffer.append((message, size))
            subscriber.bufferedBytes += size
            var dropped = 0
            while subscriber.buffer.count > subscriberBufferLimit || subscriber.bufferedBytes > subscriberBufferBytes,
                let oldest = subscriber.buffer.popFirst()
            {
                subscriber.bufferedBytes -= oldest.bytes
                dropped += 1
            }
            guard dropped > 0 else { continue }
            let before = droppedForSlowSubscribers
            droppedForSlowSubscribers += UInt64(dropped)
            if before == 0 || before / 1000 != droppedForSlowSubscribers / 1000 {
                logger.warning("subscriber buffer full, dropping oldest", metadata: [
                    "session": "\(subscriber.session.id)", "limit": "\(subscriberBufferLimit) messages (subscriber_buffer)",
                    "byteLimit": "\(subscriberBufferBytes) bytes (subscriber_buffer_bytes)", "dropped": "\(droppedForSlowSubscribers)",
                ])
            }
        }
    }

    private func deliverBufferedLocked(_ subscriber: Subscriber, into deliveries: inout Deliveries) {
        guard subscriber.consumer.pull != nil, let (message, bytes) = subscriber.buffer.popFirst().map({ ($0.message, $0.bytes) }) else { return }
        subscriber.bufferedBytes -= bytes
        guard let pull = unparkLocked(subscriber.consumer) else { return }
        deliveries.append(message.delivered(requestId: pull.requestId, close: pull.closeAfterReply), to: subscriber.session)
    }

    // MARK: - Removal

    /// Detaches every parked consumer (they get 404) and returns the messages to send; the MQ is unusable afterwards.
    func close() -> Deliveries {
        var deliveries = Deliveries()
        lock.withLock {
            // Point-to-point pulls in the order they came, then pub/sub ones.
            var parked: [(Session, Pull)] = []
            for (consumer, ticket) in pulls where consumer.pull?.ticket == ticket {
                if let pull = unparkLocked(consumer) { parked.append((consumer.session, pull)) }
            }
            for consumer in consumers.values {
                if let pull = unparkLocked(consumer) { parked.append((consumer.session, pull)) }
            }
            pulls.removeAll()
            deadlines = Heap()
            // A removed MQ's keys give their bytes back to the node-wide budget.
            _ = keyFilter.removeAll()
            expiryTimer?.cancel()
            expiryTimer = nil
            expiryTimerAt = nil
            expiryTimerGeneration &+= 1
            for (session, pull) in parked {
                var reply = Message(status: 404, body: ByteBuffer(string: "MQ(\(name)) Not Found"))
                reply.mq = name
                reply.id = pull.requestId
                reply.closeRequested = pull.closeAfterReply
                deliveries.append(reply, to: session)
            }
        }
        return deliveries
    }

    // MARK: - Slaves, keys, definition

    func attachSlave(_ slave: MessageQueue) { lock.withLock { slaves[slave.name] = slave } }

    func detachSlave(named name: String) { lock.withLock { _ = slaves.removeValue(forKey: name) } }

    func withKeyFilter<Result>(_ body: (inout KeyFilter) -> Result) -> Result { lock.withLock { body(&keyFilter) } }

    // MARK: - Monitoring

    /// Messages waiting for a consumer (what zbus 6 reports as `unconsumedMsgCount`).
    private var waitingCountLocked: Int64 { backend.pendingCount + Int64(redeliveries.count) }

    /// Messages handed to consumers and not yet acknowledged.
    private var inFlightCountLocked: Int64 { Int64(inFlightCount) }

    /// Everything the MQ still holds or is about to store (what `max_length` bounds).
    private var unconsumedCountLocked: Int64 { waitingCountLocked + inFlightCountLocked + Int64(pendingCount) }

    /// The MqInfo JSON of zbus 6 (`topics` as an array). The broker view (`data`) leaves `consumerInfoList` empty.
    func info(includeConsumers: Bool) -> JSONValue {
        lock.withLock {
            var list: [JSONValue] = []
            if includeConsumers {
                let shown: [ConsumerInfo] = isPubSub
                    ? subscribers.values.map { ConsumerInfo(remoteAddress: $0.session.remoteAddress, topics: Array($0.topics).sorted()) }
                    : pulls.filter { $0.consumer.pull?.ticket == $0.ticket }
                        .map { ConsumerInfo(remoteAddress: $0.consumer.session.remoteAddress, topics: []) }
                list = shown.map { info in
                    .object(["remoteAddr": .string(info.remoteAddress), "status": "CONNECTED", "topics": .array(info.topics.map { .string($0) })])
                }
            }
            var object: [String: JSONValue] = [
                "name": .string(definition.name),
                "mode": .int(Int64(definition.mode)),
                "creator": .string(definition.creator),
                "consumerCount": .int(Int64(consumers.count)),
                "consumerInfoList": .array(list),
                "unconsumedMsgCount": .int(isPubSub ? Int64(subscribers.values.reduce(0) { $0 + $1.buffer.count }) : waitingCountLocked),
                "inFlightMsgCount": .int(inFlightCountLocked),
                "lastUpdateTime": .int(lastUpdate),
            ]
            if definition.maxLength > 0 { object["maxLength"] = .int(definition.maxLength) }
            if let master = definition.masterMq { object["masterMq"] = .string(master) }
            return .object(object)
        }
    }
}

/// Wall-clock milliseconds since 1970.
enum Clock {
    static func milliseconds() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Int64(spec.tv_sec) * 1000 + Int64(spec.tv_nsec) / 1_000_000
    }
}
