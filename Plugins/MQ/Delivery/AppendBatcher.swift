import NIOCore
import ZbusKernel

/// The produces an MQ accepted and has not stored yet, per event loop: what one loop accepts during a tick is written to
/// the store in one batch at the end of that tick.
///
/// A value-type state machine in the style of SwiftNIO's own: each event is a mutating method that says what the
/// caller must do (schedule a flush on the loop, write a batch), and the caller does it after releasing the MQ's lock.
/// No I/O, no clock and no event loop in here, so every path is unit-tested (`AppendBatcherTests`).
///
/// Messages and what is done once they are stored (`Entry`: keys to undo, whom to acknowledge) are kept in two arrays,
/// so that the messages go to the store as they are, without being copied into an array of their own. One slot per
/// event loop that ever produced here (a handful): a linear search beats hashing, and a slot keeps its arrays'
/// capacity from tick to tick.
struct AppendBatcher<Entry> {
    /// One loop's accepted produces.
    struct Batch {
        /// The messages, in the order they were accepted.
        var messages: [Message] = []
        /// What to do for each message once it is stored, in the same order.
        var entries: [Entry] = []

        init() {}

        /// An empty batch with room for `capacity` messages (the size of the loop's previous batch).
        init(reservingCapacity capacity: Int) {
            messages.reserveCapacity(capacity)
            entries.reserveCapacity(capacity)
        }

        var count: Int { messages.count }
        var isEmpty: Bool { messages.isEmpty }
    }

    private struct Slot {
        let loop: ObjectIdentifier
        var batch = Batch()
        /// Whether a flush of this slot is scheduled on its loop.
        var flushScheduled = false
    }

    private var slots: [Slot] = []

    /// Accepted produces not stored yet (collected, or taken by a flush and not yet reported by ``stored(_:)``): what
    /// `max_length` counts beside the store's backlog.
    private(set) var pendingCount = 0

    init() {}

    /// What to do after accepting a produce.
    enum AppendAction: Equatable {
        /// Schedule ``flush(loop:)`` on the producer's loop, at the end of its current tick.
        case scheduleFlush
        /// A flush of this loop is already scheduled: it takes the message along.
        case none
    }

    /// Accepts `message` from a producer on `loop`, with what to do once it is stored; `acceptedAt` (the MQ reads the
    /// clock, this does not) replaces the batch's copy's own, in place: stamping a copy of the message first cost a
    /// copy of every field.
    @inline(__always)
    mutating func append(_ message: Message, _ entry: Entry, loop: ObjectIdentifier, acceptedAt: NIODeadline? = nil) -> AppendAction {
        let index = slotIndex(of: loop)
        slots[index].batch.messages.append(message)
        slots[index].batch.messages[slots[index].batch.messages.count - 1].acceptedAt = acceptedAt
        slots[index].batch.entries.append(entry)
        pendingCount += 1
        if slots[index].flushScheduled { return .none }
        slots[index].flushScheduled = true
        return .scheduleFlush
    }

    /// The scheduled flush of `loop` runs: returns the batch to write (empty when nothing was collected). The caller
    /// writes it, then reports it with ``stored(_:)`` whatever the outcome. Batches of one loop never overtake each
    /// other: the loop runs one flush at a time.
    mutating func flush(loop: ObjectIdentifier) -> Batch {
        guard let index = slots.firstIndex(where: { $0.loop == loop }) else { return Batch() }
        slots[index].flushScheduled = false
        let batch = slots[index].batch
        if !batch.isEmpty { slots[index].batch = Batch(reservingCapacity: batch.count) }
        return batch
    }

    /// A batch that ``flush(loop:)`` returned was written (or refused): it no longer counts as pending.
    mutating func stored(_ batch: Batch) {
        pendingCount -= batch.count
    }

    private mutating func slotIndex(of loop: ObjectIdentifier) -> Int {
        if let index = slots.firstIndex(where: { $0.loop == loop }) { return index }
        slots.append(Slot(loop: loop))
        return slots.count - 1
    }
}
