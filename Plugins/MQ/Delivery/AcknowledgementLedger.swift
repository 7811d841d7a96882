import DequeModule

/// Which sequences of a point-to-point MQ were handed out and acknowledged, and so how far the store's read cursor may
/// move: the commit bound is the sequence below the oldest one still unacknowledged.
///
/// Acknowledgements arrive out of order (competing consumers acknowledge on their next consume). The sequences handed
/// out and not yet acknowledged are kept ascending (the store hands them out in order), each marked once
/// acknowledged: an acknowledgement finds its sequence by binary search and the front is trimmed of marked ones, so
/// acknowledging costs O(log n), not a scan of everything in flight.
struct AcknowledgementLedger {
    private var outstanding: Deque<(sequence: UInt64, acknowledged: Bool)> = []
    /// Marked entries of `outstanding` not yet trimmed. Behind one message a consumer holds for ever, every later
    /// acknowledgement would stay in the deque; once marked ones are the majority they are dropped in one pass, so
    /// the deque stays within twice what is in flight at an amortized O(1) per acknowledgement.
    private var acknowledgedOutstanding = 0
    /// The highest sequence handed out so far.
    private(set) var highestHandedOut: UInt64 = 0
    /// Everything up to here is acknowledged: the bound the store's commit may move to.
    private(set) var committed: UInt64 = 0
    /// A commit is scheduled and has not taken the bound yet.
    private var commitScheduled = false

    /// Entries kept (unacknowledged ones, and acknowledged ones not yet trimmed).
    var outstandingCount: Int { outstanding.count }

    /// `sequence` was handed out of the store to a consumer.
    mutating func handedOut(_ sequence: UInt64) {
        if let last = outstanding.last, sequence < last.sequence {
            // Not expected (the store hands out in order), but the order must hold for the binary search.
            outstanding.insert((sequence, false), at: index(of: sequence))
        } else {
            outstanding.append((sequence, false))
        }
        highestHandedOut = max(highestHandedOut, sequence)
    }

    /// A consumer acknowledged `sequence`; ``settle()`` once the consumer's acknowledgements are all in.
    mutating func acknowledge(_ sequence: UInt64) {
        let index = index(of: sequence)
        if index < outstanding.count, outstanding[index].sequence == sequence, !outstanding[index].acknowledged {
            outstanding[index].acknowledged = true
            acknowledgedOutstanding += 1
        }
    }

    /// Trims what was acknowledged and moves the commit bound; true when it moved and no commit is scheduled yet
    /// (the caller schedules one, which takes the bound with ``takeCommit()``).
    mutating func settle() -> Bool {
        while let first = outstanding.first, first.acknowledged {
            outstanding.removeFirst()
            acknowledgedOutstanding -= 1
        }
        if acknowledgedOutstanding > 64, acknowledgedOutstanding * 2 > outstanding.count {
            outstanding.removeAll(where: \.acknowledged)
            acknowledgedOutstanding = 0
        }
        let bound = outstanding.first.map { $0.sequence - 1 } ?? highestHandedOut
        guard bound > committed else { return false }
        committed = bound
        guard !commitScheduled else { return false }
        commitScheduled = true
        return true
    }

    /// The scheduled commit runs: the bound to hand to the store.
    mutating func takeCommit() -> UInt64 {
        commitScheduled = false
        return committed
    }

    /// The sequences above the commit bound that were acknowledged while an older one is still out (held, or waiting
    /// to be delivered again): what a restart must not deliver again.
    var acknowledgedAboveCommit: [ClosedRange<UInt64>] {
        var acknowledged: [ClosedRange<UInt64>] = []
        var start = committed + 1
        for entry in outstanding where !entry.acknowledged && entry.sequence >= start {
            if entry.sequence > start { acknowledged.append(start...(entry.sequence - 1)) }
            start = entry.sequence + 1
        }
        if start <= highestHandedOut { acknowledged.append(start...highestHandedOut) }
        return acknowledged
    }

    /// The index of the first outstanding entry whose sequence is not below `sequence`.
    private func index(of sequence: UInt64) -> Int {
        var low = 0
        var high = outstanding.count
        while low < high {
            let middle = (low + high) / 2
            if outstanding[middle].sequence < sequence { low = middle + 1 } else { high = middle }
        }
        return low
    }
}
