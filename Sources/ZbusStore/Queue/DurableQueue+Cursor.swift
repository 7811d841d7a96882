import Logging
import NIOConcurrencyHelpers
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

extension DurableQueue {
    // MARK: - Committing

    /// Persists the read cursor: records up to and including `sequence` are consumed and are never handed out again,
    /// in this process or after a restart. Segment files whose records are all consumed are deleted.
    ///
    /// The caller passes a non-decreasing, contiguous bound (every record up to it is acknowledged); a smaller
    /// bound than the current one is ignored, a larger one than the newest record is clamped. Under
    /// ``FsyncPolicy/always`` the cursor is synced with the next group commit; otherwise it follows the policy.
    /// Errors are logged: a lost cursor write means redelivery after a restart, never loss.
    public func commit(through sequence: UInt64) {
        lock.withLock {
            guard !closed, nextSequence > 1 else { return }
            let bound = min(sequence, nextSequence - 1)
            guard bound > committed else { return }
            var hint = committedHint
            while let oldest = handedOut.first, oldest.sequence <= bound + 1 {
                droppedPosition = handedOut.popFirst()
            }
            if let candidate = droppedPosition, candidate.sequence <= bound + 1,
               hint == nil || candidate.sequence > hint!.sequence {
                hint = candidate
            }
            committed = bound
            committedHint = hint
            if !acknowledgedAhead.isEmpty {
                acknowledgedAhead = AcknowledgedRanges.clamped(acknowledgedAhead, above: bound, below: nextSequence)
            }
            do {
                try cursorFile.write(CursorFile.Cursor(committed: bound, hint: hint))
                scheduleSync(file: cursorFile.file, callback: nil)
            } catch {
                logger.error("cannot persist the read cursor", metadata: ["error": "\(error)"])
            }
            if reader.target <= bound { moveReader(to: bound + 1) }
            deleteConsumedSegments()
        }
    }

    /// Deletes the segment files all of whose records are committed (never the writer's). Caller holds the lock.
    func deleteConsumedSegments() {
        while segments.count >= 2, segments[1] - 1 <= committed {
            let path = directory + "/" + SegmentFormat.fileName(firstSequence: segments[0])
            do {
                try StoreFileSystem.unlink(path)
            } catch {
                logger.error("cannot delete a consumed segment", metadata: ["error": "\(error)"])
                return
            }
            segments.removeFirst()
            logger.debug("deleted consumed segment", metadata: ["file": "\(path)"])
        }
    }

    /// Makes every record after the committed sequence available again: ``next()`` restarts from there, as it would
    /// after a restart. For a consumer that died holding records the broker did not keep in memory.
    public func rewind() {
        lock.withLock {
            reader.target = committed + 1
            reader.segment = nil
            handedOut.removeAll()
            droppedPosition = nil
        }
    }

    // MARK: - Counts

    /// The sequence of the newest record, or 0 when nothing was ever appended.
    public var lastSequence: UInt64 {
        lock.withLock { nextSequence - 1 }
    }

    /// The committed sequence: records up to it are consumed.
    public var committedSequence: UInt64 {
        lock.withLock { committed }
    }

    /// Records appended but not committed (handed out or not): the backlog that survives a restart.
    public var unconsumedCount: UInt64 {
        lock.withLock { nextSequence - 1 - committed - AcknowledgedRanges.count(acknowledgedAhead, from: committed + 1) }
    }

    /// Records not handed out by ``next()`` yet.
    public var pendingCount: UInt64 {
        lock.withLock {
            reader.target < nextSequence
                ? nextSequence - reader.target - AcknowledgedRanges.count(acknowledgedAhead, from: reader.target) : 0
        }
    }

    // MARK: - Acknowledgements above the cursor

    /// Notes that consumers acknowledged the records in `ranges`, above the committed sequence, while an older one
    /// is still held: the cursor cannot pass them yet. A clean ``QueueStore/close()`` writes them down, so that a
    /// restart does not deliver them again; after a crash they are delivered again (at-least-once).
    public func noteAcknowledged(_ ranges: [ClosedRange<UInt64>]) {
        lock.withLock {
            guard !closed else { return }
            acknowledgedAhead = AcknowledgedRanges.clamped(acknowledgedAhead + ranges, above: committed, below: nextSequence)
        }
    }

}
