import DequeModule
#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOConcurrencyHelpers
import NIOCore
import ZbusKernel

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
    @exclusivity(unchecked) private var pulls: Deque<Pull> = []
    @exclusivity(unchecked) private var outstanding: Deque<UInt64> = []
    @exclusivity(unchecked) private var highestHandedOut: UInt64 = 0
    @exclusivity(unchecked) private var committed: UInt64 = 0

    // Consumers that have consumed and are still connected (the `consumerCount`), with what each holds. Holding the
    // session keeps its object identifier (the key of these tables, cheaper to hash than the session's UUID) from
    // being reused.
    @exclusivity(unchecked) private var consumers: [SessionKey: Consumer] = [:]
    // Pub/sub state.
    @exclusivity(unchecked) private var subscribers: [SessionKey: Subscriber] = [:]
    private let subscriberBufferLimit: Int

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
    /// Expires parked pulls past their wait limit; runs only while some parked pull has one.
    @exclusivity(unchecked) private var pullSweeper: RepeatedTask?
    /// How often parked pulls are checked against their wait limits: the precision of `timeout`. One periodic check
    /// instead of a timer armed and cancelled for every consume (an MQ-RPC worker parks a consume for every call).
    private static let pullSweepInterval = TimeAmount.milliseconds(20)
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

        init(session: Session) {
            self.session = session
        }
    }

    private struct Pull {
        let consumer: Consumer
        var session: Session { consumer.session }
        var requestId: String?
        var token: UInt64
        /// When the consume's wait limit passes (the `timeout` header), if it had one.
        var deadline: NIODeadline?
        var closeAfterReply: Bool
    }

    private struct Subscriber {
        let session: Session
        var topics: Set<String>
        var buffer: Deque<Message> = []
        var pull: Pull?
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

    init(definition: MQDefinition, backend: any QueueBackend, durableQueue: DurableQueue?, keyLimit: Int, subscriberBufferLimit: Int, logger: Logger) {
        self.name = definition.name
        self.definition = definition
        self.mode = definition.modeBits
        self.accessToken = definition.accessToken
        self.backend = backend
        self.durableQueue = durableQueue
        self.keyFilter = KeyFilter(limit: keyLimit)
        self.subscriberBufferLimit = subscriberBufferLimit
        self.lastUpdate = Clock.milliseconds()
        var logger = logger
        logger[metadataKey: "mq"] = "\(definition.name)"
        self.logger = logger
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
            if let key, !keyFilter.add(key, group: keyGroup) { throw .duplicateKey }
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
        do {
            let key = SessionKey(session)
            let consumer: Consumer
            if let known = consumers[key] {
                consumer = known
                acknowledgeLocked(consumer, eventLoop: session.eventLoop)
            } else {
                consumer = Consumer(session: session)
                consumers[key] = consumer
            }
            nextPullToken += 1
            let token = nextPullToken
            let deadline = timeoutMilliseconds.map { NIODeadline.now() + .milliseconds($0) }
            let pull = Pull(consumer: consumer, requestId: requestId, token: token, deadline: deadline, closeAfterReply: closeAfterReply)
            if isPubSub {
                var subscriber = subscribers[key] ?? Subscriber(session: session, topics: [])
                if let topics { subscriber.topics = Set(topics) }
                subscriber.pull = pull
                subscribers[key] = subscriber
                deliverBufferedLocked(key, into: &deliveries)
            } else {
                if let index = pulls.firstIndex(where: { $0.session === session }) {
                    // A new consume from a session that already waits replaces its pull (the new id wins) in place.
                    pulls[index] = pull
                } else {
                    pulls.append(pull)
                }
                dispatchLocked(into: &deliveries)
            }
            // Only a pull that is still parked needs its wait limit watched: most consumes of a busy MQ are answered
            // at once. A limit of 0 means "only if something is there": answered now.
            if let timeoutMilliseconds {
                let parkedIndex = pulls.lastIndex(where: { $0.token == token })
                let subscriberParked = subscribers[key]?.pull?.token == token
                if parkedIndex != nil || subscriberParked {
                    if timeoutMilliseconds == 0 {
                        if let parkedIndex { pulls.remove(at: parkedIndex) } else { subscribers[key]?.pull = nil }
                        deliveries.append(Self.nothingCame(to: pull, mq: name), to: session)
                    } else if pullSweeper == nil {
                        pullSweeper = session.eventLoop.scheduleRepeatedTask(initialDelay: Self.pullSweepInterval, delay: Self.pullSweepInterval) { _ in
                            self.expireDuePulls()
                        }
                    }
                }
            }
        }
        return deliveries
    }

    /// Answers the parked pulls whose wait limit has passed with 204 (nothing came), and stops the sweeper once no
    /// parked pull has a limit.
    private func expireDuePulls() {
        var expired: [Pull] = []
        lock.withLock {
            let now = NIODeadline.now()
            var stillTimed = false
            pulls.removeAll { pull in
                guard let deadline = pull.deadline else { return false }
                if deadline <= now {
                    expired.append(pull)
                    return true
                }
                stillTimed = true
                return false
            }
            if !subscribers.isEmpty {
                for (key, subscriber) in subscribers {
                    guard let pull = subscriber.pull, let deadline = pull.deadline else { continue }
                    if deadline <= now {
                        expired.append(pull)
                        subscribers[key]?.pull = nil
                    } else {
                        stillTimed = true
                    }
                }
            }
            if !stillTimed {
                pullSweeper?.cancel()
                pullSweeper = nil
            }
        }
        for pull in expired { pull.session.send(Self.nothingCame(to: pull, mq: name)) }
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
            let held = consumers.removeValue(forKey: key)?.held ?? []
            subscribers.removeValue(forKey: key)
            pulls.removeAll { $0.session === session }
            if !held.isEmpty {
                logger.debug("redelivering messages of a closed consumer", metadata: ["count": "\(held.count)"])
                for message in held.reversed() { redeliveries.prepend(message) }
                dispatchLocked(into: &deliveries)
            }
        }
        return deliveries
    }

    // MARK: - Dispatch (lock held)

    private func dispatchLocked(into deliveries: inout Deliveries) {
        while let pull = pulls.first {
            guard pull.session.isActive else {
                pulls.removeFirst()
                continue
            }
            guard let stored = redeliveries.popFirst() ?? nextFromBackendLocked() else { break }
            pulls.removeFirst()
            pull.consumer.held.append(stored)
            switch stored.payload {
            case .message(let message):
                deliveries.append(message.delivered(requestId: pull.requestId, close: pull.closeAfterReply), to: pull.session)
            case .record(let record):
                deliveries.append(.delivery(record: record, requestId: pull.requestId, close: pull.closeAfterReply), to: pull.session)
            }
        }
    }

    private func nextFromBackendLocked() -> StoredMessage? {
        guard let stored = backend.next() else { return nil }
        outstanding.append(stored.sequence)
        highestHandedOut = max(highestHandedOut, stored.sequence)
        return stored
    }

    private func acknowledgeLocked(_ consumer: Consumer, eventLoop: any EventLoop) {
        guard !consumer.held.isEmpty else { return }
        for stored in consumer.held {
            if let index = outstanding.firstIndex(of: stored.sequence) { outstanding.remove(at: index) }
        }
        consumer.held.removeAll(keepingCapacity: true)
        let bound = outstanding.min().map { $0 - 1 } ?? highestHandedOut
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
            for sequence in outstanding.sorted() where sequence >= start {
                if sequence > start { acknowledged.append(start...(sequence - 1)) }
                start = sequence + 1
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
        for (key, var subscriber) in subscribers {
            // A message without a topic reaches `*` subscribers (zbus 6.3.0 dropped it).
            let matches = subscriber.topics.contains("*") || (topic.map { subscriber.topics.contains($0) } ?? false)
            guard matches, subscriber.session.isActive else { continue }
            if let pull = subscriber.pull {
                subscriber.pull = nil
                deliveries.append(message.delivered(requestId: pull.requestId, close: pull.closeAfterReply), to: subscriber.session)
            } else {
                subscriber.buffer.append(message)
                if subscriber.buffer.count > subscriberBufferLimit {
                    subscriber.buffer.removeFirst()
                    droppedForSlowSubscribers += 1
                    if droppedForSlowSubscribers.isMultiple(of: 1000) || droppedForSlowSubscribers == 1 {
                        logger.warning("subscriber buffer full, dropping oldest", metadata: [
                            "session": "\(subscriber.session.id)", "limit": "\(subscriberBufferLimit)", "dropped": "\(droppedForSlowSubscribers)",
                        ])
                    }
                }
            }
            subscribers[key] = subscriber
        }
    }

    private func deliverBufferedLocked(_ key: SessionKey, into deliveries: inout Deliveries) {
        guard var subscriber = subscribers[key], let pull = subscriber.pull, let message = subscriber.buffer.popFirst() else { return }
        subscriber.pull = nil
        subscribers[key] = subscriber
        deliveries.append(message.delivered(requestId: pull.requestId, close: pull.closeAfterReply), to: subscriber.session)
    }

    // MARK: - Removal

    /// Detaches every parked consumer (they get 404) and returns the messages to send; the MQ is unusable afterwards.
    func close() -> Deliveries {
        var deliveries = Deliveries()
        lock.withLock {
            var parked: [Pull] = Array(pulls)
            pulls.removeAll()
            for (id, var subscriber) in subscribers {
                if let pull = subscriber.pull { parked.append(pull) }
                subscriber.pull = nil
                subscribers[id] = subscriber
            }
            pullSweeper?.cancel()
            pullSweeper = nil
            for pull in parked {
                var reply = Message(status: 404, body: ByteBuffer(string: "MQ(\(name)) Not Found"))
                reply.mq = name
                reply.id = pull.requestId
                reply.closeRequested = pull.closeAfterReply
                deliveries.append(reply, to: pull.session)
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
    private var inFlightCountLocked: Int64 { Int64(consumers.values.reduce(0) { $0 + $1.held.count }) }

    /// Everything the MQ still holds or is about to store (what `max_length` bounds).
    private var unconsumedCountLocked: Int64 { waitingCountLocked + inFlightCountLocked + Int64(pendingCount) }

    /// The MqInfo JSON of zbus 6 (`topics` as an array). The broker view (`data`) leaves `consumerInfoList` empty.
    func info(includeConsumers: Bool) -> JSONValue {
        lock.withLock {
            var list: [JSONValue] = []
            if includeConsumers {
                let shown: [ConsumerInfo] = isPubSub
                    ? subscribers.values.map { ConsumerInfo(remoteAddress: $0.session.remoteAddress, topics: Array($0.topics).sorted()) }
                    : pulls.map { ConsumerInfo(remoteAddress: $0.session.remoteAddress, topics: []) }
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
