import DequeModule
import NIOCore
import ZbusKernel

/// A message with its position in its queue.
struct StoredMessage: Sendable {
    let sequence: UInt64
    let message: Message
}

/// Where an MQ keeps the messages not yet handed out. Called under the owning ``MessageQueue``'s lock.
protocol QueueBackend: AnyObject, Sendable {
    /// Messages not yet handed out.
    var pendingCount: Int64 { get }
    /// Whether ``append(_:onDurable:)`` may call back later (group commit) rather than being durable on return.
    var acknowledgesLater: Bool { get }
    /// Stores a message. `onDurable` is called (maybe later, from another thread) once it is durable.
    func append(_ message: Message, onDurable: (@Sendable (Result<Void, QueueStoreError>) -> Void)?) throws(QueueStoreError) -> UInt64
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
    var acknowledgesLater: Bool { false }

    func append(_ message: Message, onDurable: (@Sendable (Result<Void, QueueStoreError>) -> Void)?) throws(QueueStoreError) -> UInt64 {
        let sequence = nextSequence
        nextSequence += 1
        messages.append(StoredMessage(sequence: sequence, message: message))
        onDurable?(.success(()))
        return sequence
    }

    func next() -> StoredMessage? { messages.popFirst() }

    func commit(through sequence: UInt64) {}
}

/// Messages in the node's durable queue store, in wire form.
final class DurableBackend: QueueBackend, @unchecked Sendable {
    let queue: DurableQueue
    private let allocator = ByteBufferAllocator()
    private let limits: MessageLimits
    private let fsyncAlways: Bool

    init(queue: DurableQueue, limits: MessageLimits, fsyncAlways: Bool) {
        self.queue = queue
        self.limits = limits
        self.fsyncAlways = fsyncAlways
    }

    var pendingCount: Int64 { Int64(queue.pendingCount) }
    var acknowledgesLater: Bool { fsyncAlways }

    func append(_ message: Message, onDurable: (@Sendable (Result<Void, QueueStoreError>) -> Void)?) throws(QueueStoreError) -> UInt64 {
        let record = MessageSerializer.serialize(message, allocator: allocator)
        return try queue.append(record, onDurable: onDurable)
    }

    func next() -> StoredMessage? {
        while let (sequence, record) = queue.next() {
            var buffer = record
            // Records were written by the serializer and checked by CRC, so they parse; the limits only guard
            // against a record from a node configured with larger limits.
            var parser = MessageParser(limits: MessageLimits(maxHeaderBytes: max(limits.maxHeaderBytes, buffer.readableBytes), maxBodyBytes: max(limits.maxBodyBytes, buffer.readableBytes)))
            if let message = try? parser.next(&buffer) {
                return StoredMessage(sequence: sequence, message: message)
            }
            // Unreadable as a message (never written by this node): skipped; the next commit covers its sequence.
        }
        return nil
    }

    func commit(through sequence: UInt64) { queue.commit(through: sequence) }
}
