import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// One named durable FIFO queue of the ``QueueStore``: append-only segment files, a persisted read cursor and a
/// metadata blob, in a directory of their own.
///
/// Records are opaque bytes, numbered by a 64-bit sequence that starts at 1 and only grows over the life of the
/// queue (restarts included). ``next()`` hands records out in order, each once per process lifetime;
/// ``commit(through:)`` persists how far they have been consumed. After a restart hand-out resumes after the
/// committed sequence, so records that were handed out but not committed come again (at-least-once).
///
/// Memory does not grow with the backlog: the queue keeps the list of its segment files, the write position and a
/// read position with a read buffer of at most 256 KiB (released while the queue is drained), never the records.
///
/// Damage is never delivered. A torn or corrupt tail of the newest segment is cut when the queue is opened. Damage
/// found later while reading (the middle of an older segment going bad on disk) is logged and the rest of that
/// segment is skipped: its remaining records are lost, hand-out continues with the next segment.
///
/// Thread-safe: one lock guards the state, so appends and reads may come from any event loop. Callbacks run
/// without the lock held. The lock is not held while the sync thread runs `fdatasync`.
public final class DurableQueue: @unchecked Sendable {
    /// The queue's name.
    public let name: String
    /// The queue's directory.
    public let directory: String

    let policy: FsyncPolicy
    let segmentBytes: Int64
    let syncer: StoreSyncer?
    /// The store's I/O thread (see ``QueueStore/execute(_:)``): prepares segment files and reads uncached records
    /// ahead when the queue is used from an event loop. `nil` for a queue used only off the loops.
    let io: NIOThreadPool?
    let logger: Logger
    let lock = NIOLock()
    /// Serialises metadata writes, which sync twice, without stalling appends behind them.
    let metadataLock = NIOLock()
    let allocator = ByteBufferAllocator()

    /// How many hand-out positions are remembered to give commits an exact resume hint.
    static let positionMemory = 8192

    // Everything below is guarded by `lock`. The `var`s are `@exclusivity(unchecked)`: the lock keeps threads apart
    // and no access spans a call back into the queue (the durability callbacks run after the lock is released), so
    // the runtime's per-access check would only repeat what the lock guarantees.
    @exclusivity(unchecked) var closed = false
    @exclusivity(unchecked) var metadataBytes: [UInt8]
    let directoryFile: StoreFile
    let cursorFile: CursorFile
    /// First sequences of the segment files, ascending; the last one is the writer's.
    @exclusivity(unchecked) var segments: [UInt64]
    @exclusivity(unchecked) var writer: Writer?
    /// The sequence the next append gets.
    @exclusivity(unchecked) var nextSequence: UInt64
    /// Set when the next append must start a new segment (records were lost and sequences skip ahead, or the
    /// active segment was found damaged).
    @exclusivity(unchecked) var rollBeforeNextAppend = false
    @exclusivity(unchecked) var committed: UInt64
    @exclusivity(unchecked) var committedHint: RecordPosition?
    @exclusivity(unchecked) var reader: Reader
    let readBuffer = ReadBuffer(cachedOnEventLoops: true)
    /// The read cursor moved since the sync thread last wrote it.
    @exclusivity(unchecked) var cursorMoved = false
    /// A segment file made ahead on the I/O thread (named ``spareFileName`` until it is in use), so that a segment
    /// roll on an event loop creates no file.
    @exclusivity(unchecked) var spare: StoreFile?
    @exclusivity(unchecked) var spareRequested = false
    /// Set when a spare in use could not take its segment name: it is still ``spareFileName``, so no new spare may be
    /// made under that name (that would truncate the writer's segment); segments grow past their size instead.
    @exclusivity(unchecked) var spareNameStuck = false
    /// A read ahead (or the opening of an older segment) runs on the I/O thread; ``next()`` waits for it.
    @exclusivity(unchecked) var readAheadPending = false
    /// Read-ahead or open-ahead failures in a row (EMFILE, EIO...): the next attempt waits longer after each, so a
    /// failing disk or a full descriptor table does not turn into a loop of attempts and error lines.
    @exclusivity(unchecked) var readAheadFailures = 0
    /// Older segments opened on the I/O thread for the reader, by first sequence (`nil`: unreadable).
    @exclusivity(unchecked) var preparedSegments: [UInt64: (file: StoreFile, size: Int64)?] = [:]
    /// The last few segments that were the writer's in this process, still open: the reader goes on to them without
    /// opening a file (a consumer a little behind the producers never waits for an open).
    @exclusivity(unchecked) var recentSegments: [UInt64: (file: StoreFile, size: Int64)] = [:]
    static let recentSegmentLimit = 4
    /// Told when records that ``next()`` could not read without waiting are in memory (from the I/O thread).
    @exclusivity(unchecked) var readableHandler: (@Sendable () -> Void)?
    /// Sequences above `committed` that were acknowledged (out of order, past a record still held) when the queue
    /// was last closed cleanly, or that the broker reported before this close: never handed out again. Sorted,
    /// disjoint; ranges at or below `committed` are dropped as commits pass them.
    @exclusivity(unchecked) var acknowledgedAhead: [ClosedRange<UInt64>] = []
    /// Where the records handed out but not yet committed end (their successors start), oldest first.
    @exclusivity(unchecked) var handedOut = PositionRing()
    /// The newest position dropped from `handedOut`, still usable as a hint if it is at or before a commit.
    @exclusivity(unchecked) var droppedPosition: RecordPosition?

    struct Writer {
        let first: UInt64
        let file: StoreFile
        var offset: Int64
        /// Where the zeros written ahead of the records end (see ``DurableQueue/reserve(through:)``); `Int64.max`
        /// once writing them failed for this file (then the file ends at its last record).
        var reservedEnd: Int64

        init(first: UInt64, file: StoreFile, offset: Int64) {
            self.first = first
            self.file = file
            self.offset = offset
            self.reservedEnd = offset
        }
    }

    /// How far ahead of the writer the segment file is extended with zeros.
    static let reservationStep: Int64 = 1 << 20

    struct Reader {
        /// The sequence ``next()`` hands out next.
        var target: UInt64
        var segment: OpenSegment?
    }

    struct OpenSegment {
        let first: UInt64
        let file: StoreFile
        /// Where the record with `sequence` starts.
        var offset: Int64
        var sequence: UInt64
        /// The file's size, or `nil` while it is the writer's segment (then the writer's offset is the limit).
        var size: Int64?
    }

    // MARK: - Opening

    /// Opens the queue stored in `directory` (which must exist), recovering the newest segment's tail.
    init(
        name: String, directory: String, metadata: [UInt8]?, policy: FsyncPolicy, segmentBytes: Int,
        syncer: StoreSyncer?, io: NIOThreadPool? = nil, logger: Logger
    ) throws(QueueStoreError) {
        self.name = name
        self.directory = directory
        self.policy = policy
        self.segmentBytes = Int64(segmentBytes)
        self.syncer = syncer
        self.io = io
        var logger = logger
        logger[metadataKey: "mq"] = "\(name)"
        self.logger = logger

        directoryFile = try StoreFile.openDirectory(directory)
        var segments: [UInt64] = []
        for entry in try StoreFileSystem.list(directory) {
            if let first = SegmentFormat.firstSequence(fileName: entry), first > 0 {
                segments.append(first)
            } else if entry == Self.spareFileName {
                if let first = try Self.adoptSpare(directory: directory, logger: logger) { segments.append(first) }
            } else if entry == CheckedBlobFile.metadata.temporaryFileName || entry == CheckedBlobFile.acknowledged.temporaryFileName {
                try StoreFileSystem.unlink(directory + "/" + entry)  // an interrupted write
            }
        }
        segments.sort()

        let (cursorFile, cursor, cursorDamaged) = try CursorFile.open(directory + "/cursor")
        self.cursorFile = cursorFile
        if cursorDamaged {
            logger.error("read cursor damaged in both slots; redelivering from the oldest stored record",
                         metadata: ["file": "\(directory)/cursor"])
        }

        if let metadata {
            if (try? CheckedBlobFile.metadata.load(directory: directory)) != metadata {
                try CheckedBlobFile.metadata.store(metadata, directory: directory)
            }
            metadataBytes = metadata
        } else if let stored = try CheckedBlobFile.metadata.load(directory: directory) {
            metadataBytes = stored
        } else {
            try CheckedBlobFile.metadata.store([], directory: directory)
            metadataBytes = []
        }

        // Find the true end: only the newest segment is read.
        var writer: Writer?
        var nextSequence: UInt64 = 1
        var floor: UInt64 = 1
        let scanBuffer = ReadBuffer()
        while let last = segments.last {
            let path = directory + "/" + SegmentFormat.fileName(firstSequence: last)
            if let recovered = try DurableQueue.recover(segment: path, first: last, buffer: scanBuffer, policy: policy, logger: logger) {
                if recovered.records == 0, segments.count > 1 {
                    // A newest segment without a record (empty, a torn header, or only a header) holds nothing, but
                    // kept as the writer's it would claim every sequence from its name on: a stray empty file named
                    // inside the previous segment's range hid that segment's later records and had their sequences
                    // taken again. Removing it makes the segment before it the writer's again, ending where its last
                    // record does (a segment rolled just before a crash loses nothing by it either).
                    logger.warning(
                        "newest segment holds no record; removing it so the previous segment's records all stay readable",
                        metadata: ["file": "\(path)"])
                    try StoreFileSystem.unlink(path)
                    segments.removeLast()
                    continue
                }
                writer = Writer(first: last, file: recovered.file, offset: recovered.end)
                nextSequence = last + recovered.records
                break
            }
            // Its header is unreadable: set it aside, never reuse its sequences, and recover the one before it.
            floor = max(floor, last)
            try StoreFileSystem.rename(path, to: path + ".damaged")
            segments.removeLast()
        }
        scanBuffer.release()

        var committed = cursor?.committed ?? 0
        if let oldest = segments.first, committed < oldest - 1 {
            committed = oldest - 1  // segments are deleted once committed; the cursor write may not have landed
        }
        floor = max(floor, committed + 1)
        if nextSequence < floor {
            if writer != nil {
                logger.warning(
                    "records \(nextSequence)..<\(floor) are missing from the newest segment (lost with an unsynced tail); sequences continue at \(floor)")
            }
            nextSequence = floor
            rollBeforeNextAppend = true
        }
        self.segments = segments
        self.writer = writer
        self.nextSequence = nextSequence
        self.committed = committed
        self.committedHint = cursor?.hint
        self.reader = Reader(target: committed + 1, segment: nil)
        self.acknowledgedAhead = try Self.loadAcknowledgedAhead(
            directory: directory, above: committed, below: nextSequence, logger: logger)
        try lock.withLock { Result { () throws(QueueStoreError) in
            // Opening runs off the event loops: the segment the next append needs is made now, not by that append,
            // and the segment the reader starts in is opened now, not by the first consume.
            if writer == nil || rollBeforeNextAppend { _ = try roll() }
            if reader.target < nextSequence { _ = try? openReaderSegment() }
        } }.get()
    }

    /// The name of a segment file made ahead (see `spare`).
    static let spareFileName = "next.spare"

    /// A spare segment found when opening: one that was in use (its header names its first sequence) gets its
    /// segment name, which the crash kept it from getting; an unused one is deleted. Returns the adopted segment's
    /// first sequence.
    static func adoptSpare(directory: String, logger: Logger) throws(QueueStoreError) -> UInt64? {
        let path = directory + "/" + spareFileName
        let file = try StoreFile.openReadOnly(path)
        var header = [UInt8](repeating: 0, count: SegmentFormat.headerSize)
        let got = try file.read(into: &header, at: 0)
        guard got == header.count, let first = header.withUnsafeBytes({ SegmentFormat.parseHeader($0) }), first > 0 else {
            try StoreFileSystem.unlink(path)
            return nil
        }
        let named = directory + "/" + SegmentFormat.fileName(firstSequence: first)
        try StoreFileSystem.rename(path, to: named)
        try StoreFileSystem.syncDirectory(directory)
        logger.info("adopted a segment file made ahead", metadata: ["file": "\(named)"])
        return first
    }

    /// Sets what is told when records ``next()`` could not read without waiting for the disk are in memory (it is
    /// called on the store's I/O thread; the broker then hands out again).
    public func setReadableHandler(_ handler: (@Sendable () -> Void)?) {
        lock.withLock { readableHandler = handler }
    }

    // MARK: - Metadata

    /// The metadata blob (the broker's encoding of the queue's mode, token, ...).
    public var metadata: [UInt8] {
        lock.withLock { metadataBytes }
    }

    /// Replaces the metadata blob, atomically and durably (written to a temporary file, synced, renamed).
    /// - Throws: ``QueueStoreError`` when the files cannot be written, or the queue is closed.
    public func setMetadata(_ bytes: [UInt8]) throws(QueueStoreError) {
        metadataLock.lock()
        defer { metadataLock.unlock() }
        guard !lock.withLock({ closed }) else { throw .queueClosed(name: name) }
        try CheckedBlobFile.metadata.store(bytes, directory: directory)
        lock.withLock { metadataBytes = bytes }
    }

    // MARK: - Closing

    /// Stops the queue: later appends throw ``QueueStoreError/queueClosed(name:)`` and ``next()`` returns `nil`.
    /// With `sync`, the written data and the cursor are synced first. Returns whether it was open.
    @discardableResult
    func close(sync: Bool) -> Bool {
        let files = lock.withLock { () -> [StoreFile]? in
            guard !closed else { return nil }
            if sync && cursorMoved {
                // A move the sync thread has not written yet (closing stops that thread first).
                cursorMoved = false
                writeCursor(CursorFile.Cursor(committed: committed, hint: committedHint))
            }
            closed = true
            spare = nil
            recentSegments.removeAll()
            preparedSegments.removeAll()
            readableHandler = nil
            reader.segment = nil
            readBuffer.release()
            handedOut.removeAll()
            if let writer { trimReservedTail(of: writer) }  // a clean restart then finds the files exact
            return [writer?.file, cursorFile.file, directoryFile].compactMap { $0 }
        }
        guard let files else { return false }
        if sync {
            for file in files {
                do { try file.sync() } catch { logger.error("sync on close failed", metadata: ["error": "\(error)"]) }
            }
            let ahead = lock.withLock { acknowledgedAhead }
            if !ahead.isEmpty {
                do {
                    try CheckedBlobFile.acknowledged.store(AcknowledgedRanges.encode(ahead), directory: directory)
                } catch {
                    logger.error("cannot keep the acknowledgements above the cursor; those records will be delivered again",
                                 metadata: ["error": "\(error)"])
                }
            }
        }
        return true
    }
}
