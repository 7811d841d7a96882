import Atomics
import DequeModule
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
/// The executor of the MQ's delivery state machines: ``PointToPointDelivery`` or ``PubSubDelivery`` (by mode) decide
/// who gets what; this class holds them behind one lock, feeds them the store's messages (`backend.next()`), runs
/// what they return (the expiry timer, the store's commit) and sends their deliveries once the lock is released.
/// Handlers on any event loop call in.
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
    let lock = NIOLock()
    @exclusivity(unchecked) var definition: MQDefinition
    let backend: any QueueBackend
    let durableQueue: DurableQueue?
    private let logger: Logger

    // Delivery state: the machine of the MQ's mode serves it, the other stays empty.
    @exclusivity(unchecked) var pointToPoint: PointToPointDelivery<Session>
    @exclusivity(unchecked) var pubSub: PubSubDelivery<Session>
    private let sessionIndex: SessionQueueIndex?

    /// Produces collected during one event-loop tick, per loop, written to the store in one batch at the end of it.
    @exclusivity(unchecked) private var appends = AppendBatcher<PendingAppend>()

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
    @exclusivity(unchecked) private(set) var slaves = SlaveQueues<MessageQueue>()
    @exclusivity(unchecked) var lastUpdate: Int64
    /// Messages stored (or, for pub/sub, published) so far: a plain count under the lock, added once per batch and
    /// read by the statistics sampler (see `MessageQueue+Statistics.swift`), so counting costs no atomic per message.
    @exclusivity(unchecked) var producedCount: UInt64 = 0
    /// The statistics sampler's state: the last rates and the checkpoints the oldest waiting message's age is read from.
    @exclusivity(unchecked) var sampling = QueueSampling()
    /// The one timer, armed for the soonest wait limit while any pull has one (when: the state machines say).
    @exclusivity(unchecked) private var expiryTimer: Scheduled<Void>?

    init(definition: MQDefinition, backend: any QueueBackend, durableQueue: DurableQueue?, limits: Limits, logger: Logger) {
        self.name = definition.name
        self.definition = definition
        self.mode = definition.modeBits
        self.accessToken = definition.accessToken
        self.backend = backend
        self.durableQueue = durableQueue
        self.keyFilter = KeyFilter(limit: limits.keyLimit, maxKeys: limits.maxKeys, maxGroups: limits.maxKeyGroups,
                                   budget: limits.keyBudget)
        self.pointToPoint = PointToPointDelivery(mq: definition.name, maxParked: limits.maxParkedConsumes)
        self.pubSub = PubSubDelivery(mq: definition.name, maxParked: limits.maxParkedConsumes,
                                     bufferLimit: limits.subscriberBuffer, bufferBytes: limits.subscriberBufferBytes)
        self.sessionIndex = limits.sessionIndex
        self.lastUpdate = Clock.milliseconds()
        var logger = logger
        logger[metadataKey: "mq"] = "\(definition.name)"
        self.logger = logger
        // A strong reference: the store drops the handler when the queue closes (removal, shutdown). A weak one
        // would give this MQ a side table, and every retain and release of it would take the slow path.
        durableQueue?.setReadableHandler { [self] in storeBecameReadable() }
    }

    /// Records the store could not read without waiting for the disk are in memory now (told from the store's I/O
    /// thread): hand them to the consumers waiting.
    private func storeBecameReadable() {
        var deliveries = Deliveries()
        lock.withLock {
            guard !isPubSub else { return }
            dispatchLocked(into: &deliveries)
        }
        deliveries.send()
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
    /// Unique among the MQs of the process, never 0: what a session notes as the last MQ it produced to.
    let mark: UInt64 = MessageQueue.marks.wrappingIncrementThenLoad(ordering: .relaxed)
    private static let marks = ManagedAtomic<UInt64>(0)
    var currentDefinition: MQDefinition { lock.withLock { definition } }
    var isPubSub: Bool { mode.contains(.pubSub) }

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
            if mode.contains(.rpc) && consumerCountLocked == 0 { throw .serviceDown }
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
                producedCount &+= 1
                fanOutLocked(message, into: &deliveries)
                fannedOut = true
            } else {
                if definition.maxLength > 0, unconsumedCountLocked >= definition.maxLength {
                    if let key { _ = keyFilter.remove(key, group: keyGroup) }
                    throw .full(limit: definition.maxLength)
                }
                let entry = PendingAppend(key: key, keyGroup: keyGroup, receipt: receipt)
                // Every message carries when this MQ accepted it (replacing what an in-process producer's message
                // carried from another MQ), so that the worker handed it can tell how long it waited: a bus adapter
                // answers one that waited past its `queue_timeout` at once (see `Message.acceptedAt`).
                scheduleFlush = appends.append(message, entry, loop: ObjectIdentifier(eventLoop), acceptedAt: .now()) == .scheduleFlush
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
        let batch: AppendBatcher<PendingAppend>.Batch = lock.withLock {
            let batch = appends.flush(loop: loop)
            if !writeUnlocked, !batch.isEmpty { failure = write(batch, acknowledgesLater: acknowledgesLater, on: eventLoop) }
            return batch
        }
        guard !batch.isEmpty else { return }
        if writeUnlocked { failure = write(batch, acknowledgesLater: acknowledgesLater, on: eventLoop) }
        // One clock reading for the whole batch: the MQ's last update and the time every acknowledgement carries.
        let storedAt = Clock.milliseconds()
        lock.withLock {
            appends.stored(batch)
            lastUpdate = storedAt
            if failure == nil { producedCount &+= UInt64(batch.count) }
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
    private func write(_ batch: AppendBatcher<PendingAppend>.Batch, acknowledgesLater: Bool, on eventLoop: any EventLoop) -> QueueStoreError? {
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
    func consume(session: Session, requestId: String?, topics: [String]?, timeoutMilliseconds: Int64?, closeAfterReply: Bool) {
        // The lock is taken without a closure, and what to send is sent here rather than returned: `deliveries`
        // captured by a closure, or returned, was copied out.
        var deliveries = Deliveries()
        let wait: WaitLimit
        switch timeoutMilliseconds {
        case 0?:
            wait = .immediate
        case let milliseconds? where milliseconds > 0:
            let now = NIODeadline.now()
            wait = .until(now + .milliseconds(milliseconds), now: now)
        default:
            wait = .unlimited
        }
        let reply = PullReply(requestId: requestId, closeAfterReply: closeAfterReply)
        lock.lock()
        let outcome: ConsumeOutcome
        if isPubSub {
            outcome = pubSub.consume(from: session, reply: reply, topics: topics, wait: wait, into: &deliveries)
        } else {
            outcome = pointToPoint.consume(from: session, reply: reply, wait: wait, into: &deliveries, next: { backend.next() })
        }
        if outcome.isNewConsumer {
            // Lock order: this MQ's lock, then the index's (which never calls out).
            sessionIndex?.note(session, consumesFrom: self)
        }
        if outcome.commitDue {
            // One cursor write per tick for all the acknowledgements it brought, not one per consume.
            session.eventLoop.execute { self.flushCommit() }
        }
        if let timer = outcome.timer { runLocked(timer, on: session.eventLoop) }
        lock.unlock()
        deliveries.send()
    }

    /// Arms or cancels the expiry timer as a state machine said.
    private func runLocked(_ timer: ExpiryTimerAction, on eventLoop: (any EventLoop)?) {
        expiryTimer?.cancel()
        expiryTimer = nil
        if case .arm(let at, let generation) = timer, let eventLoop {
            expiryTimer = eventLoop.scheduleTask(deadline: at) { self.expireDuePulls(generation: generation, on: eventLoop) }
        }
    }

    /// Answers the parked pulls whose wait limit has passed with 204 (nothing came), and arms the timer for the next
    /// wait limit if any pull still has one.
    private func expireDuePulls(generation: UInt64, on eventLoop: any EventLoop) {
        var deliveries = Deliveries()
        lock.withLock {
            let now = NIODeadline.now()
            let timer = isPubSub
                ? pubSub.expire(generation: generation, now: now, into: &deliveries)
                : pointToPoint.expire(generation: generation, now: now, into: &deliveries)
            if let timer { runLocked(timer, on: eventLoop) }
        }
        deliveries.send()
    }

    /// A connection closed: forget its pulls and subscription, and put the messages it held back at the head.
    func sessionClosed(_ session: Session) -> Deliveries {
        var deliveries = Deliveries()
        lock.withLock {
            if isPubSub {
                pubSub.peerClosed(session)
                return
            }
            let held = pointToPoint.peerClosed(session, into: &deliveries, next: { backend.next() })
            if held > 0 { logger.debug("redelivering messages of a closed consumer", metadata: ["count": "\(held)"]) }
        }
        return deliveries
    }

    // MARK: - Delivery (lock held)

    /// Hands stored messages to the consumes waiting (after a produce is stored).
    private func dispatchLocked(into deliveries: inout Deliveries) {
        pointToPoint.dispatch(into: &deliveries, next: { backend.next() })
    }

    /// Before a clean shutdown: writes the cursor move still pending, and tells the store which records above the
    /// cursor consumers acknowledged while an older one is still out (held, or waiting to be delivered again), so
    /// that a restart delivers only what was never acknowledged.
    func noteAcknowledgementsForRestart() {
        guard let durableQueue else { return }
        lock.withLock {
            backend.commit(through: pointToPoint.ledger.committed)
            durableQueue.noteAcknowledged(pointToPoint.ledger.acknowledgedAboveCommit)
        }
    }

    private func flushCommit() {
        lock.withLock { backend.commit(through: pointToPoint.takeCommit()) }
    }

    /// Publishes `message` to the subscribers of a pub/sub MQ.
    private func fanOutLocked(_ message: Message, into deliveries: inout Deliveries) {
        guard let report = pubSub.publish(message, into: &deliveries) else { return }
        logger.warning("subscriber buffer full, dropping oldest", metadata: [
            "session": "\(report.peer.id)", "limit": "\(pubSub.bufferLimit) messages (subscriber_buffer)",
            "byteLimit": "\(pubSub.bufferBytes) bytes (subscriber_buffer_bytes)", "dropped": "\(report.total)",
        ])
    }

    // MARK: - Removal

    /// Detaches every parked consumer (they get 404) and returns the messages to send; the MQ is unusable afterwards.
    func close() -> Deliveries {
        durableQueue?.setReadableHandler(nil)  // breaks the reference cycle with the store's queue
        var deliveries = Deliveries()
        lock.withLock {
            // Point-to-point pulls in the order they came, then pub/sub ones.
            let timer = isPubSub ? pubSub.close(into: &deliveries) : pointToPoint.close(into: &deliveries)
            runLocked(timer, on: nil)
            // A removed MQ's keys give their bytes back to the node-wide budget.
            _ = keyFilter.removeAll()
        }
        return deliveries
    }

    // MARK: - Slaves, keys, definition

    func attachSlave(_ slave: MessageQueue) { lock.withLock { slaves.attach(slave, named: slave.name) } }

    func detachSlave(named name: String) { lock.withLock { slaves.detach(named: name) } }

    func withKeyFilter<Result>(_ body: (inout KeyFilter) -> Result) -> Result { lock.withLock { body(&keyFilter) } }

    // MARK: - Counts (lock held)

    /// Consumers connected that have consumed (`consumerCount`).
    var consumerCountLocked: Int { isPubSub ? pubSub.consumerCount : pointToPoint.consumerCount }

    /// Messages waiting for a consumer (what zbus 6 reports as `unconsumedMsgCount`).
    var waitingCountLocked: Int64 { backend.pendingCount + Int64(pointToPoint.redeliveryCount) }

    /// Messages handed to consumers and not yet acknowledged.
    var inFlightCountLocked: Int64 { Int64(pointToPoint.inFlightCount) }

    /// Everything the MQ still holds or is about to store (what `max_length` bounds).
    private var unconsumedCountLocked: Int64 { waitingCountLocked + inFlightCountLocked + Int64(appends.pendingCount) }
}

/// Wall-clock milliseconds since 1970.
enum Clock {
    static func milliseconds() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Int64(spec.tv_sec) * 1000 + Int64(spec.tv_nsec) / 1_000_000
    }
}
