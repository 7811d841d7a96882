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

    /// Moves the read cursor: records up to and including `sequence` are consumed and are never handed out again, in
    /// this process or, once the cursor is written, after a restart.
    ///
    /// The caller passes a non-decreasing, contiguous bound (every record up to it is acknowledged); a smaller
    /// bound than the current one is ignored, a larger one than the newest record is clamped. Called on an event loop,
    /// it touches no file: the sync thread writes the cursor (within ``StoreSyncer/cursorInterval``, or with the
    /// next sync if that comes first) and then deletes the segment files whose records are all consumed; after a
    /// crash, records acknowledged since the last written cursor are delivered again, never lost. Called on any other
    /// thread, it writes the cursor and deletes those files before it returns.
    public func commit(through sequence: UInt64) {
        let moved = lock.withLock { () -> Bool in
            guard !closed, nextSequence > 1 else { return false }
            let bound = min(sequence, nextSequence - 1)
            guard bound > committed else { return false }
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
            if reader.target <= bound { moveReader(to: bound + 1) }
            let first = !cursorMoved
            cursorMoved = true
            return first
        }
        guard moved else { return }
        if let syncer, BlockingIOCheck.isOnEventLoop {
            syncer.cursorMoved(self)
        } else {
            persistCursor()  // a thread that may wait: written now
        }
    }

    /// Writes the cursor if it moved, then deletes the segment files all of whose records it passed (never the
    /// writer's). Runs on the sync thread (or where the queue is closed).
    func persistCursor() {
        let work = lock.withLock { () -> (cursor: CursorFile.Cursor, doomed: [String])? in
            guard cursorMoved, !closed else { return nil }
            cursorMoved = false
            var doomed: [String] = []
            while segments.count >= 2, segments[1] - 1 <= committed {
                doomed.append(SegmentFormat.fileName(firstSequence: segments[0]))
                recentSegments[segments[0]] = nil
                preparedSegments[segments[0]] = nil
                segments.removeFirst()
            }
            return (CursorFile.Cursor(committed: committed, hint: committedHint), doomed)
        }
        guard let work else { return }
        writeCursor(work.cursor)
        // Deleted after the cursor is written: a crash in between finds the cursor before the oldest segment, which
        // opening takes for "everything before it was consumed".
        // Through the queue's own directory, not its path: a `remove` and a `create` of the same name may run on the
        // I/O thread between the check above and these deletions, and the new queue's first segments share these names.
        for name in work.doomed {
            do {
                try StoreFileSystem.unlink(name, in: directoryFile)
                logger.debug("deleted consumed segment", metadata: ["file": "\(directory)/\(name)"])
            } catch {
                logger.error("cannot delete a consumed segment", metadata: ["file": "\(directory)/\(name)", "error": "\(error)"])
            }
        }
    }

    /// Writes `cursor` to the cursor file and has it synced under the policy. Only the sync thread and closing write it.
    func writeCursor(_ cursor: CursorFile.Cursor) {
        do {
            try cursorFile.write(cursor)
            scheduleSync(file: cursorFile.file, callback: nil)
        } catch {
            logger.error("cannot persist the read cursor", metadata: ["error": "\(error)"])
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
