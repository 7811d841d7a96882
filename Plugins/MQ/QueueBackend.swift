import DequeModule
import NIOCore
import ZbusKernel
import ZbusStore

/// A message with its position in its queue.
struct StoredMessage: Sendable {
    /// A message held in memory, or a durable one as the store keeps it (its wire form, delivered without parsing).
    enum Payload: Sendable {
        case message(Message)
        case record(ByteBuffer)
    }

    let sequence: UInt64
    let payload: Payload
}

/// Where an MQ keeps the messages not yet handed out. Called under the owning ``MessageQueue``'s lock.
protocol QueueBackend: AnyObject, Sendable {
    /// Messages not yet handed out.
    var pendingCount: Int64 { get }
    /// The sequence of the last message stored (0 before the first).
    var lastSequence: UInt64 { get }
    /// Whether ``appendBatch(_:onDurable:)`` calls back later (group commit) rather than being durable on return.
    var acknowledgesLater: Bool { get }
    /// Whether ``appendBatch(_:onDurable:)`` may run without the owning queue's lock.
    var isThreadSafe: Bool { get }
    /// Stores messages in order, with as few writes as possible. `onDurable` is called once for the whole batch
    /// when ``acknowledgesLater`` (from the store's sync thread); otherwise the batch is durable on return.
    func appendBatch(_ messages: [Message], onDurable: (@Sendable (Result<Void, QueueStoreError>) -> Void)?) throws(QueueStoreError)
    /// The oldest message not yet handed out.
    func next() -> StoredMessage?
    /// Everything up to `sequence` has been consumed and acknowledged.
    func commit(through sequence: UInt64)
}

/// Messages in memory (modes Memory, RPC, PubSub). Lost on restart, by definition.
final class MemoryBackend: QueueBackend, @unchecked Sendable {
    private var messages: Deque<StoredMessage> = []
    private var nextSequence: UInt64 = 1

    var pendingCount: Int64 { Int64(messages.count) }
    var lastSequence: UInt64 { nextSequence - 1 }
    var acknowledgesLater: Bool { false }
    var isThreadSafe: Bool { false }

    func appendBatch(_ batch: [Message], onDurable: (@Sendable (Result<Void, QueueStoreError>) -> Void)?) throws(QueueStoreError) {
        for message in batch {
            messages.append(StoredMessage(sequence: nextSequence, payload: .message(message)))
            nextSequence += 1
        }
    }

    func next() -> StoredMessage? { messages.popFirst() }

    func commit(through sequence: UInt64) {}
}

/// Messages in the node's durable queue store, in wire form.
final class DurableBackend: QueueBackend, @unchecked Sendable {
    let queue: DurableQueue
    private let allocator = ByteBufferAllocator()
    private let fsyncAlways: Bool

    init(queue: DurableQueue, fsyncAlways: Bool) {
        self.queue = queue
        self.fsyncAlways = fsyncAlways
    }

    var pendingCount: Int64 { Int64(queue.pendingCount) }
    var lastSequence: UInt64 { queue.lastSequence }
    var acknowledgesLater: Bool { fsyncAlways }
    var isThreadSafe: Bool { true }

    func appendBatch(_ batch: [Message], onDurable: (@Sendable (Result<Void, QueueStoreError>) -> Void)?) throws(QueueStoreError) {
        if batch.count == 1 {
            try queue.append(MessageSerializer.serialize(batch[0], allocator: allocator, omittingNodeHeaders: true), onDurable: onDurable)
        } else {
            // One buffer for the whole batch, handed to the store as slices: one allocation instead of one per message.
            var capacity = 0
            for message in batch { capacity += MessageSerializer.estimatedHeadSize(message) + (message.body?.readableBytes ?? 0) }
            var buffer = allocator.buffer(capacity: capacity)
            var ends: [Int] = []
            ends.reserveCapacity(batch.count)
            for message in batch {
                MessageSerializer.writeHead(message, into: &buffer, omittingNodeHeaders: true)
                if var body = message.body { buffer.writeBuffer(&body) }
                ends.append(buffer.writerIndex)
            }
            // Slices are taken only once everything is written: a slice shares the storage, and writing into shared
            // storage would copy it.
            var records: [ByteBuffer] = []
            records.reserveCapacity(batch.count)
            var start = buffer.readerIndex
            for end in ends {
                records.append(buffer.getSlice(at: start, length: end - start)!)
                start = end
            }
            try queue.appendBatch(records, onDurable: onDurable)
        }
    }

    func next() -> StoredMessage? {
        // Delivered as stored (see `StoredDelivery`): no parsing while the queue's lock is held.
        guard let (sequence, record) = queue.next() else { return nil }
        return StoredMessage(sequence: sequence, payload: .record(record))
    }

    func commit(through sequence: UInt64) { queue.commit(through: sequence) }
}
