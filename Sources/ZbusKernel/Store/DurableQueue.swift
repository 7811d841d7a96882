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

    private let policy: FsyncPolicy
    private let segmentBytes: Int64
    private let syncer: StoreSyncer?
    private let logger: Logger
    private let lock = NIOLock()
    /// Serialises metadata writes, which sync twice, without stalling appends behind them.
    private let metadataLock = NIOLock()
    private let allocator = ByteBufferAllocator()

    /// How many hand-out positions are remembered to give commits an exact resume hint.
    private static let positionMemory = 8192

    // Everything below is guarded by `lock`. The `var`s are `@exclusivity(unchecked)`: the lock keeps threads apart
    // and no access spans a call back into the queue (the durability callbacks run after the lock is released), so
    // the runtime's per-access check would only repeat what the lock guarantees.
    @exclusivity(unchecked) private var closed = false
    @exclusivity(unchecked) private var metadataBytes: [UInt8]
    private let directoryFile: StoreFile
    private let cursorFile: CursorFile
    /// First sequences of the segment files, ascending; the last one is the writer's.
    @exclusivity(unchecked) private var segments: [UInt64]
    @exclusivity(unchecked) private var writer: Writer?
    /// The sequence the next append gets.
    @exclusivity(unchecked) private var nextSequence: UInt64
    /// Set when the next append must start a new segment (records were lost and sequences skip ahead, or the
    /// active segment was found damaged).
    @exclusivity(unchecked) private var rollBeforeNextAppend = false
    @exclusivity(unchecked) private var committed: UInt64
    @exclusivity(unchecked) private var committedHint: RecordPosition?
    @exclusivity(unchecked) private var reader: Reader
    private let readBuffer = ReadBuffer()
    /// Sequences above `committed` that were acknowledged (out of order, past a record still held) when the queue
    /// was last closed cleanly, or that the broker reported before this close: never handed out again. Sorted,
    /// disjoint; ranges at or below `committed` are dropped as commits pass them.
    @exclusivity(unchecked) private var acknowledgedAhead: [ClosedRange<UInt64>] = []
    /// Where the records handed out but not yet committed end (their successors start), oldest first.
    @exclusivity(unchecked) private var handedOut = PositionRing()
    /// The newest position dropped from `handedOut`, still usable as a hint if it is at or before a commit.
    @exclusivity(unchecked) private var droppedPosition: RecordPosition?

    private struct Writer {
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

    private struct Reader {
        /// The sequence ``next()`` hands out next.
        var target: UInt64
        var segment: OpenSegment?
    }

    private struct OpenSegment {
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
        syncer: StoreSyncer?, logger: Logger
    ) throws(QueueStoreError) {
        self.name = name
        self.directory = directory
        self.policy = policy
        self.segmentBytes = Int64(segmentBytes)
        self.syncer = syncer
        var logger = logger
        logger[metadataKey: "mq"] = "\(name)"
        self.logger = logger

        directoryFile = try StoreFile.openDirectory(directory)
        var segments: [UInt64] = []
        for entry in try StoreFileSystem.list(directory) {
            if let first = SegmentFormat.firstSequence(fileName: entry), first > 0 {
                segments.append(first)
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
    }

    /// Reads the acknowledgements a clean close left above the cursor, keeps those that still name records
    /// (above `committed`, below `nextSequence`), and removes the file, durably, before any append: a sequence
    /// that a lost tail frees for a new record must never be taken for an acknowledged one after a later crash.
    /// A damaged file is logged and ignored (those records are delivered again: at-least-once).
    private static func loadAcknowledgedAhead(directory: String, above committed: UInt64, below nextSequence: UInt64,
                                              logger: Logger) throws(QueueStoreError) -> [ClosedRange<UInt64>] {
        let file = CheckedBlobFile.acknowledged
        var ranges: [ClosedRange<UInt64>] = []
        do {
            if let blob = try file.load(directory: directory) {
                guard let decoded = AcknowledgedRanges.decode(blob) else {
                    throw QueueStoreError.corruptFile(path: directory + "/" + file.fileName, reason: "malformed ranges")
                }
                ranges = AcknowledgedRanges.clamped(decoded, above: committed, below: nextSequence)
            }
        } catch {
            logger.error("acknowledgements above the cursor unreadable; those records will be delivered again",
                         metadata: ["error": "\(error)"])
        }
        try file.remove(directory: directory)
        return ranges
    }

    /// Validates the header of the newest segment and cuts a torn or corrupt tail; `nil` when the header is
    /// unreadable (bad magic, or the wrong first sequence).
    private static func recover(
        segment path: String, first: UInt64, buffer: ReadBuffer, policy: FsyncPolicy, logger: Logger
    ) throws(QueueStoreError) -> (file: StoreFile, end: Int64, records: UInt64)? {
        let file = try StoreFile.openReadWrite(path, create: false)
        let size = try file.size()
        let headerSize = Int64(SegmentFormat.headerSize)
        if size < headerSize {
            // Created, but the header never fully reached the disk: no record can be in it.
            logger.warning("segment header torn; rewriting it", metadata: ["file": "\(path)", "size": "\(size)"])
            try file.truncate(to: 0)
            try file.write(SegmentFormat.header(firstSequence: first), at: 0)
            if policy != .none { try file.sync() }
            return (file, headerSize, 0)
        }
        guard let header = try buffer.bytes(of: file, at: 0, count: SegmentFormat.headerSize, limit: size),
              SegmentFormat.parseHeader(header) == first
        else {
            logger.error("segment header damaged (bad magic or first sequence); setting the file aside as .damaged",
                         metadata: ["file": "\(path)"])
            return nil
        }
        var offset = headerSize
        var records: UInt64 = 0
        while true {
            switch try buffer.probeRecord(of: file, at: offset, limit: size, verifyUpTo: .max) {
            case .record(let length, _, _):
                offset += Int64(SegmentFormat.recordHeaderSize + length)
                records += 1
            case .end:
                return (file, offset, records)
            case .damaged(let reason):
                // Zeros group commit wrote ahead of the writer, left by a crash, are no damage: no record was ever
                // completed there. (Fewer zeros than a record header are a torn header. Under the other policies
                // nothing writes zeros ahead, so a zero tail means unsynced records were lost: reported.)
                var zerosWrittenAhead = false
                if policy == .always, size - offset >= Int64(SegmentFormat.recordHeaderSize) {
                    zerosWrittenAhead = try isAllZeros(file, from: offset, to: size, buffer: buffer)
                }
                if zerosWrittenAhead {
                    logger.debug("trimming the zero tail of the newest segment",
                                 metadata: ["file": "\(path)", "offset": "\(offset)", "bytes": "\(size - offset)"])
                } else {
                    // How many records the cut takes with it, counted by their framing: an operator must be able to
                    // tell one torn record from thousands behind a bad byte.
                    let cut = try countFrames(file, from: offset, to: size, buffer: buffer)
                    let firstCut = first + records
                    let count = cut.exact ? "\(cut.records)" : "at least \(cut.records)"
                    logger.error(
                        "cutting damaged segment tail: \(reason); \(size - offset) bytes cut, \(count) records lost (\(firstCut)..<\(firstCut + UInt64(cut.records))\(cut.exact ? "" : " and maybe more"))",
                        metadata: ["file": "\(path)", "offset": "\(offset)", "cut_bytes": "\(size - offset)",
                                   "records_kept": "\(records)", "records_cut": "\(count)"])
                }
                buffer.invalidate()
                try file.truncate(to: offset)
                if policy != .none { try file.sync() }
                return (file, offset, records)
            }
        }
    }

    /// Counts the records in a damaged tail (`start..<end`) by walking their framing without checking payloads: a
    /// record whose length is readable and fits counts, and so does a last one that is torn or garbled. `exact` is
    /// false when a garbled length stopped the walk (more records may lie behind it).
    private static func countFrames(_ file: StoreFile, from start: Int64, to end: Int64, buffer: ReadBuffer)
        throws(QueueStoreError) -> (records: Int, exact: Bool)
    {
        var offset = start
        var records = 0
        while offset < end {
            records += 1
            guard let header = try buffer.bytes(of: file, at: offset, count: SegmentFormat.recordHeaderSize, limit: end) else {
                return (records, true)  // a torn record header: the last record
            }
            let length = Int64(SegmentFormat.loadBigEndian(UInt32.self, from: header, at: 0))
            if length == 0 || length > Int64(SegmentFormat.maxRecordBytes) { return (records, false) }
            offset += Int64(SegmentFormat.recordHeaderSize) + length  // beyond `end`: a torn last record
        }
        return (records, true)
    }

    /// Whether bytes `start..<end` of `file` are all zero.
    private static func isAllZeros(_ file: StoreFile, from start: Int64, to end: Int64, buffer: ReadBuffer)
        throws(QueueStoreError) -> Bool
    {
        var offset = start
        while offset < end {
            let count = Int(min(end - offset, Int64(ReadBuffer.maxChunk)))
            guard let bytes = try buffer.bytes(of: file, at: offset, count: count, limit: end),
                  bytes.allSatisfy({ $0 == 0 })
            else { return false }
            offset += Int64(count)
        }
        return true
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

    // MARK: - Appending

    /// Appends one record and returns its sequence number.
    ///
    /// The bytes are handed to the kernel with one `write(2)` before this returns, so they survive a crash of the
    /// process. `onDurable` reports when the record is durable under the store's ``FsyncPolicy``: right away, on the
    /// caller's thread, for ``FsyncPolicy/none`` and ``FsyncPolicy/interval(milliseconds:)``; from the sync thread
    /// after the `fdatasync` that covers it for ``FsyncPolicy/always`` (group commit). It is called exactly once,
    /// and never while a lock of the store is held.
    /// - Parameters:
    ///   - record: the bytes (at least one, at most 1 GiB); its reader index is not moved.
    ///   - onDurable: called once the record is durable, or with the error if the sync failed.
    /// - Returns: the record's sequence number.
    /// - Throws: ``QueueStoreError`` when the record is empty or too large, the queue is closed, or the write failed
    ///   (then nothing was stored and `onDurable` is not called).
    @discardableResult
    public func append(
        _ record: ByteBuffer, onDurable: (@Sendable (Result<Void, QueueStoreError>) -> Void)? = nil
    ) throws(QueueStoreError) -> UInt64 {
        let length = record.readableBytes
        try check(length: length)
        var header = SegmentFormat.recordHeader(length: length, crc: record.withUnsafeReadableBytes { CRC32C.checksum($0) })
        let sequence = try withUnsafeBytes(of: &header) { head in
            record.withUnsafeReadableBytes { payload in
                Result { () throws(QueueStoreError) -> UInt64 in
                    lock.lock()
                    defer { lock.unlock() }
                    guard !closed else { throw .queueClosed(name: name) }
                    let file = try prepareWriter(frameBytes: head.count + length)
                    let start = writer!.offset
                    reserve(through: start + Int64(head.count + length))
                    do throws(QueueStoreError) {
                        try file.write(head, payload, at: start)
                    } catch {
                        undoPartialWrite(file: file, at: start)
                        throw error
                    }
                    writer!.offset += Int64(head.count + length)
                    let sequence = nextSequence
                    nextSequence += 1
                    scheduleSync(file: file, callback: policy == .always ? onDurable : nil)
                    return sequence
                }
            }
        }.get()
        if policy != .always { onDurable?(.success(())) }
        return sequence
    }

    /// Appends several records with as few `write(2)` calls as possible (normally one per segment) and returns
    /// their sequence numbers, consecutive and in order. `onDurable` is called once, when all of them are durable
    /// (see ``append(_:onDurable:)``).
    /// - Throws: ``QueueStoreError`` as ``append(_:onDurable:)``. When a write fails part-way, the records written
    ///   before it stay stored (and will be delivered); the ones after it are not.
    @discardableResult
    public func appendBatch(
        _ records: [ByteBuffer], onDurable: (@Sendable (Result<Void, QueueStoreError>) -> Void)? = nil
    ) throws(QueueStoreError) -> Range<UInt64> {
        if records.isEmpty {
            let next = lock.withLock { nextSequence }
            onDurable?(.success(()))
            return next..<next
        }
        var checksums: [UInt32] = []
        checksums.reserveCapacity(records.count)
        for record in records {
            try check(length: record.readableBytes)
            checksums.append(record.withUnsafeReadableBytes { CRC32C.checksum($0) })
        }
        let range = try lock.withLock {
            Result { () throws(QueueStoreError) -> Range<UInt64> in
                try appendLocked(records, checksums: checksums, onDurable: onDurable)
            }
        }.get()
        if policy != .always { onDurable?(.success(())) }
        return range
    }

    /// The body of ``appendBatch(_:onDurable:)``. Caller holds the lock.
    private func appendLocked(
        _ records: [ByteBuffer], checksums: [UInt32], onDurable: StoreSyncer.Callback?
    ) throws(QueueStoreError) -> Range<UInt64> {
        guard !closed else { throw .queueClosed(name: name) }
        let first = nextSequence
        var pending: [UInt8] = []
        // Sized once for the whole batch (up to the 1 MiB write size), so that it does not grow by copying.
        var framedBytes = 0
        for record in records where record.readableBytes <= ReadBuffer.maxChunk {
            framedBytes += SegmentFormat.recordHeaderSize + record.readableBytes
        }
        pending.reserveCapacity(min(framedBytes, (1 << 20) + SegmentFormat.recordHeaderSize + ReadBuffer.maxChunk))
        var pendingRecords: UInt64 = 0
        var lastFile: StoreFile?
        var earlierFiles: [StoreFile] = []

        func flush() throws(QueueStoreError) {
            guard !pending.isEmpty, let file = writer?.file else { return }
            let start = writer!.offset
            reserve(through: start + Int64(pending.count))
            do throws(QueueStoreError) {
                try file.write(pending, at: start)
            } catch {
                undoPartialWrite(file: file, at: start)
                throw error
            }
            writer!.offset += Int64(pending.count)
            nextSequence += pendingRecords
            pending.removeAll(keepingCapacity: true)
            pendingRecords = 0
        }

        for (index, record) in records.enumerated() {
            let length = record.readableBytes
            let frame = SegmentFormat.recordHeaderSize + length
            let filled = (writer?.offset ?? 0) + Int64(pending.count)
            if writer == nil || rollBeforeNextAppend
                || (filled > Int64(SegmentFormat.headerSize) && filled + Int64(frame) > segmentBytes)
            {
                try flush()
                let file = try prepareWriter(frameBytes: frame)
                // A batch that spans segments: the earlier ones must be synced too.
                if let lastFile, lastFile !== file {
                    scheduleSync(file: lastFile, callback: nil)
                    earlierFiles.append(lastFile)
                }
            }
            let file = writer!.file
            lastFile = file
            if length > ReadBuffer.maxChunk {
                try flush()
                var header = SegmentFormat.recordHeader(length: length, crc: checksums[index])
                let start = writer!.offset
                reserve(through: start + Int64(frame))
                let written = withUnsafeBytes(of: &header) { head in
                    record.withUnsafeReadableBytes { payload in
                        Result { () throws(QueueStoreError) in try file.write(head, payload, at: start) }
                    }
                }
                if case .failure(let error) = written {
                    undoPartialWrite(file: file, at: start)
                    throw error
                }
                writer!.offset += Int64(frame)
                nextSequence += 1
            } else {
                SegmentFormat.appendBigEndian(UInt32(length), to: &pending)
                SegmentFormat.appendBigEndian(checksums[index], to: &pending)
                record.withUnsafeReadableBytes { pending.append(contentsOf: $0) }
                pendingRecords += 1
                if pending.count >= 1 << 20 { try flush() }
            }
        }
        try flush()
        if let lastFile {
            switch policy {
            case .none: break
            case .interval: syncer?.markDirty(lastFile)
            case .always: syncer?.enqueue(lastFile, earlier: earlierFiles, callback: onDurable)
            }
        }
        return first..<nextSequence
    }

    private func check(length: Int) throws(QueueStoreError) {
        guard length > 0 else { throw .emptyRecord(queue: name) }
        guard length <= SegmentFormat.maxRecordBytes else {
            throw .recordTooLarge(queue: name, size: length, limit: SegmentFormat.maxRecordBytes)
        }
    }

    private func needsRoll(writer: Writer, frameBytes: Int) -> Bool {
        writer.offset > Int64(SegmentFormat.headerSize) && writer.offset + Int64(frameBytes) > segmentBytes
    }

    /// The file the next `frameBytes` go to, after starting a new segment if the current one is full. Caller holds
    /// the lock.
    private func prepareWriter(frameBytes: Int) throws(QueueStoreError) -> StoreFile {
        if let writer, !rollBeforeNextAppend, !needsRoll(writer: writer, frameBytes: frameBytes) { return writer.file }
        return try roll()
    }

    /// Starts a new segment whose first record gets `nextSequence`. Caller holds the lock.
    private func roll() throws(QueueStoreError) -> StoreFile {
        let first = nextSequence
        if let writer, writer.first == first {
            // The active segment is still empty (nothing was lost after all): keep it.
            rollBeforeNextAppend = false
            return writer.file
        }
        let path = directory + "/" + SegmentFormat.fileName(firstSequence: first)
        let file = try StoreFile.openReadWrite(path, create: true, truncate: true)
        do {
            try file.write(SegmentFormat.header(firstSequence: first), at: 0)
            // The new file's directory entry must be durable before records in it are acknowledged as durable.
            switch policy {
            case .always: try directoryFile.sync()
            case .interval: syncer?.markDirty(directoryFile)
            case .none: break
            }
        } catch {
            try? StoreFileSystem.unlink(path)
            throw error
        }
        if let previous = writer {
            // Older segments end at their last record: readers take a segment's size as its end.
            trimReservedTail(of: previous)
            if reader.segment?.first == previous.first { reader.segment!.size = previous.offset }
            // Under group commit the old segment's tail must be synced no later than records in the new one.
            if policy == .always { syncer?.enqueue(previous.file, callback: nil) }
        }
        segments.append(first)
        writer = Writer(first: first, file: file, offset: Int64(SegmentFormat.headerSize))
        rollBeforeNextAppend = false
        logger.debug("started segment", metadata: ["file": "\(path)"])
        return file
    }

    /// Under group commit, writes zeros ahead of the writer, a step at a time (at most to the segment size), so that
    /// the next appends up to `end` land on blocks that already exist (see ``StoreFile/fillWithZeros(from:to:)``). A
    /// write larger than a step is not preceded by zeros (that would double it); it extends the file itself. Only a
    /// performance measure: after a failure the file grows with each append. Caller holds the lock.
    private func reserve(through end: Int64) {
        // Only group commit syncs after every batch; under the other policies one sync covers many appends, so
        // there is nothing to gain, and the zeros would add to what the kernel writes back.
        guard policy == .always, let current = writer, end > current.reservedEnd else { return }
        let from = max(current.reservedEnd, current.offset)
        let target = max(end, min(from + Self.reservationStep, segmentBytes))
        guard target - from <= Self.reservationStep else {
            writer!.reservedEnd = end
            return
        }
        if current.file.fillWithZeros(from: from, to: target) {
            writer!.reservedEnd = target
        } else {
            // Whatever part of the zeros landed goes, so that `.max` means "nothing after the last record".
            try? current.file.truncate(to: current.offset)
            logger.debug("cannot write zeros ahead of the writer; the file grows with each append",
                         metadata: ["file": "\(current.file.path)"])
            writer!.reservedEnd = .max
        }
    }

    /// Cuts the reserved zeros after `writer`'s last record. A failure is logged: the zeros stay, and whoever reads
    /// the segment next takes them for its end (see ``recover(segment:first:buffer:policy:logger:)``).
    private func trimReservedTail(of writer: Writer) {
        guard writer.reservedEnd > writer.offset, writer.reservedEnd != .max else { return }
        do {
            try writer.file.truncate(to: writer.offset)
        } catch {
            logger.error("cannot trim the reserved tail of a segment", metadata: ["file": "\(writer.file.path)", "error": "\(error)"])
        }
    }

    /// Removes the bytes of a failed write so that the file ends at the last whole record. Caller holds the lock.
    private func undoPartialWrite(file: StoreFile, at offset: Int64) {
        if writer?.file === file { writer!.reservedEnd = offset }
        do {
            try file.truncate(to: offset)
        } catch {
            // The tail stays torn on disk; the next open cuts it. Keep appending in a fresh segment meanwhile.
            logger.error("cannot cut a failed write", metadata: ["file": "\(file.path)", "error": "\(error)"])
            rollBeforeNextAppend = true
        }
    }

    /// Tells the sync thread about data just written to `file`. Caller holds the lock, which keeps the order of
    /// the acknowledgements the order of the appends.
    private func scheduleSync(file: StoreFile, callback: StoreSyncer.Callback?) {
        switch policy {
        case .none: break
        case .interval: syncer?.markDirty(file)
        case .always: syncer?.enqueue(file, callback: callback)
        }
    }

    // MARK: - Reading

    /// Hands out the oldest record not handed out yet in this process, or `nil` when there is none.
    ///
    /// Each record is handed out once per process lifetime (see ``rewind()``); after a restart hand-out resumes after
    /// the committed sequence. A read error is logged and reported as `nil`; the position stays, so a later call
    /// tries again.
    public func next() -> (sequence: UInt64, record: ByteBuffer)? {
        lock.withLock { () -> (sequence: UInt64, record: ByteBuffer)? in
            guard !closed else { return nil }
            do {
                if let found = try readNext() { return found }
            } catch {
                logger.error("cannot read the queue", metadata: ["error": "\(error)"])
                reader.segment = nil
                readBuffer.invalidate()
                return nil
            }
            readBuffer.release()  // drained: give the memory back until there is a backlog again
            return nil
        }
    }

    private func readNext() throws(QueueStoreError) -> (sequence: UInt64, record: ByteBuffer)? {
        while reader.target < nextSequence {
            if !acknowledgedAhead.isEmpty, let skip = acknowledgedAhead.first(where: { $0.contains(reader.target) }) {
                reader.target = skip.upperBound + 1  // acknowledged before the last clean close: not handed out again
                continue
            }
            if reader.segment == nil {
                guard try openReaderSegment() else { return nil }
            }
            var segment = reader.segment!
            let following = segmentIndex(after: segment.first).map { segments[$0] }
            if let following, segment.sequence >= following {
                moveReader(to: following)
                continue
            }
            let limit = segment.size ?? writer!.offset
            let wanted = segment.sequence == reader.target
            var probe = try readBuffer.probeRecord(
                of: segment.file, at: segment.offset, limit: limit, verifyUpTo: wanted ? ReadBuffer.maxChunk : 0)
            if case .record(let length, let crc, _) = probe, wanted {
                let sequence = segment.sequence
                let payloadOffset = segment.offset + Int64(SegmentFormat.recordHeaderSize)
                let payload = try readPayload(of: segment.file, at: payloadOffset, length: length, crc: crc, limit: limit)
                switch payload {
                case .success(let record):
                    segment.offset = payloadOffset + Int64(length)
                    segment.sequence += 1
                    reader.segment = segment
                    reader.target = segment.sequence
                    remember(RecordPosition(segment: segment.first, offset: segment.offset, sequence: segment.sequence))
                    return (sequence, record)
                case .failure(let reason):
                    probe = .damaged(reason: reason.text)
                }
            }
            switch probe {
            case .record(let length, _, _):
                // Skipping up to the resume point: only the framing is read.
                segment.offset += Int64(SegmentFormat.recordHeaderSize + length)
                segment.sequence += 1
                reader.segment = segment
            case .end:
                if let following {
                    logger.error(
                        "segment ends before its last record; skipping to the next segment",
                        metadata: ["file": "\(segment.file.path)", "offset": "\(segment.offset)",
                                   "missing": "\(segment.sequence)..<\(following)"])
                    moveReader(to: following)
                } else {
                    // The writer's segment has no more records although sequences were handed out: they were lost
                    // (logged when the queue was opened). New records go to a new segment.
                    rollBeforeNextAppend = true
                    moveReader(to: nextSequence)
                }
            case .damaged(let reason):
                let skipTo = following ?? nextSequence
                logger.error(
                    "damaged record; skipping the rest of the segment: \(reason)",
                    metadata: ["file": "\(segment.file.path)", "offset": "\(segment.offset)",
                               "lost": "\(segment.sequence)..<\(skipTo)"])
                if following == nil { rollBeforeNextAppend = true }
                moveReader(to: skipTo)
            }
        }
        return nil
    }

    /// Opens the segment holding `reader.target`, at the committed hint when it points into it. Caller holds the
    /// lock. `false` when there is nothing to open.
    private func openReaderSegment() throws(QueueStoreError) -> Bool {
        let index: Int
        let after = segmentIndex(after: reader.target) ?? segments.count
        if after > 0 {
            index = after - 1  // the newest segment starting at or before the target
        } else {
            guard let oldest = segments.first else { return false }
            logger.error("records before the oldest segment are missing", metadata: ["missing": "\(reader.target)..<\(oldest)"])
            reader.target = oldest
            index = 0
        }
        let first = segments[index]
        let file: StoreFile
        var size: Int64?
        if let writer, writer.first == first {
            file = writer.file
        } else {
            let path = directory + "/" + SegmentFormat.fileName(firstSequence: first)
            guard let opened = try openOlderSegment(path: path, first: first) else {
                let following = index + 1 < segments.count ? segments[index + 1] : nextSequence
                logger.error("segment unreadable; skipping it",
                             metadata: ["file": "\(path)", "lost": "\(reader.target)..<\(following)"])
                moveReader(to: following)
                return reader.target < nextSequence ? try openReaderSegment() : false
            }
            (file, size) = opened
        }
        var start = RecordPosition(segment: first, offset: Int64(SegmentFormat.headerSize), sequence: first)
        for hint in [committedHint, droppedPosition] {
            if let hint, hint.segment == first, hint.sequence <= reader.target, hint.sequence > start.sequence {
                start = hint
            }
        }
        reader.segment = OpenSegment(first: first, file: file, offset: start.offset, sequence: start.sequence, size: size)
        return true
    }

    /// Opens a segment other than the writer's for reading and checks its header; `nil` (logged) when the file is
    /// missing or its header is damaged. Caller holds the lock.
    private func openOlderSegment(path: String, first: UInt64) throws(QueueStoreError) -> (StoreFile, Int64)? {
        let file: StoreFile
        do throws(QueueStoreError) {
            file = try StoreFile.openReadOnly(path)
        } catch {
            guard case .io(_, _, ENOENT) = error else { throw error }
            logger.error("segment file missing", metadata: ["file": "\(path)"])
            return nil
        }
        let size = try file.size()
        let header = try readBuffer.bytes(of: file, at: 0, count: SegmentFormat.headerSize, limit: size)
        guard header.flatMap(SegmentFormat.parseHeader) == first else {
            logger.error("segment header damaged (bad magic or first sequence)", metadata: ["file": "\(path)"])
            return nil
        }
        return (file, size)
    }

    /// The index of the oldest segment that starts after `sequence`, or `nil` when none does (binary search: queues
    /// configured with small segments can have thousands). Caller holds the lock.
    private func segmentIndex(after sequence: UInt64) -> Int? {
        var low = 0
        var high = segments.count
        while low < high {
            let middle = (low + high) / 2
            if segments[middle] > sequence { high = middle } else { low = middle + 1 }
        }
        return low < segments.count ? low : nil
    }

    private func moveReader(to sequence: UInt64) {
        reader.target = max(reader.target, sequence)
        reader.segment = nil
    }

    private struct Damage: Error {
        let text: String
    }

    /// The payload of a record whose framing was checked; a large one bypasses the read buffer and lands in its own
    /// buffer with one `pread`, verified on the way. A checksum mismatch is reported as damage.
    private func readPayload(of file: StoreFile, at offset: Int64, length: Int, crc expected: UInt32, limit: Int64)
        throws(QueueStoreError) -> Result<ByteBuffer, Damage>
    {
        var record = allocator.buffer(capacity: length)
        if length <= ReadBuffer.maxChunk {
            // `probeRecord` verified it and left it in the buffer.
            guard let bytes = try readBuffer.bytes(of: file, at: offset, count: length, limit: limit) else {
                return .failure(Damage(text: "torn record: file ends inside the payload of \(length) bytes"))
            }
            record.writeBytes(bytes)
            return .success(record)
        }
        var failure: QueueStoreError?
        var computed: UInt32 = 0
        var got = 0
        record.writeWithUnsafeMutableBytes(minimumWritableBytes: length) { target in
            let view = UnsafeMutableRawBufferPointer(rebasing: target[0..<length])
            do throws(QueueStoreError) {
                got = try file.read(into: view, at: offset)
            } catch {
                failure = error
                return 0
            }
            computed = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: view[0..<got]))
            return got
        }
        if let failure { throw failure }
        guard got == length else {
            return .failure(Damage(text: "torn record: file ends inside the payload of \(length) bytes"))
        }
        guard computed == expected else {
            return .failure(Damage(text: ReadBuffer.mismatch(stored: expected, computed: computed)))
        }
        return .success(record)
    }

    /// Remembers where the record after a handed-out one starts, for the commit hint. Caller holds the lock.
    private func remember(_ position: RecordPosition) {
        handedOut.append(position)
        if handedOut.count > DurableQueue.positionMemory { droppedPosition = handedOut.popFirst() }
    }

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
    private func deleteConsumedSegments() {
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

    // MARK: - Closing

    /// Stops the queue: later appends throw ``QueueStoreError/queueClosed(name:)`` and ``next()`` returns `nil`.
    /// With `sync`, the written data and the cursor are synced first. Returns whether it was open.
    @discardableResult
    func close(sync: Bool) -> Bool {
        let files = lock.withLock { () -> [StoreFile]? in
            guard !closed else { return nil }
            closed = true
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

/// A FIFO of positions that drops from the front in O(1) (amortised) without a collections dependency.
struct PositionRing {
    private var storage: [RecordPosition] = []
    private var head = 0

    var count: Int { storage.count - head }
    var first: RecordPosition? { head < storage.count ? storage[head] : nil }

    mutating func append(_ position: RecordPosition) { storage.append(position) }

    mutating func popFirst() -> RecordPosition? {
        guard head < storage.count else { return nil }
        let position = storage[head]
        head += 1
        if head == storage.count {
            storage.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 1024 && head * 2 >= storage.count {
            storage.removeFirst(head)
            head = 0
        }
        return position
    }

    mutating func removeAll() {
        storage = []
        head = 0
    }
}

/// Sorted, disjoint ranges of acknowledged sequences, and their file form (UInt32 BE count, then UInt64 BE bounds).
enum AcknowledgedRanges {
    /// `ranges` merged, sorted and cut to `committed + 1 ..< nextSequence`.
    static func clamped(_ ranges: [ClosedRange<UInt64>], above committed: UInt64, below nextSequence: UInt64)
        -> [ClosedRange<UInt64>]
    {
        guard nextSequence > committed + 1 else { return [] }
        let window = (committed + 1)...(nextSequence - 1)
        var merged: [ClosedRange<UInt64>] = []
        for range in ranges.sorted(by: { $0.lowerBound < $1.lowerBound }) where range.overlaps(window) {
            let cut = range.clamped(to: window)
            if let last = merged.last, cut.lowerBound <= last.upperBound &+ 1 {
                merged[merged.count - 1] = last.lowerBound...max(last.upperBound, cut.upperBound)
            } else {
                merged.append(cut)
            }
        }
        return merged
    }

    /// How many sequences of `ranges` are at or above `start`.
    static func count(_ ranges: [ClosedRange<UInt64>], from start: UInt64) -> UInt64 {
        ranges.reduce(0) { total, range in
            range.upperBound < start ? total : total + range.upperBound - max(range.lowerBound, start) + 1
        }
    }

    static func encode(_ ranges: [ClosedRange<UInt64>]) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(4 + 16 * ranges.count)
        SegmentFormat.appendBigEndian(UInt32(ranges.count), to: &bytes)
        for range in ranges {
            SegmentFormat.appendBigEndian(range.lowerBound, to: &bytes)
            SegmentFormat.appendBigEndian(range.upperBound, to: &bytes)
        }
        return bytes
    }

    /// `nil` when the bytes do not hold whole, ordered ranges.
    static func decode(_ bytes: [UInt8]) -> [ClosedRange<UInt64>]? {
        guard bytes.count >= 4 else { return nil }
        return bytes.withUnsafeBytes { buffer -> [ClosedRange<UInt64>]? in
            let count = Int(SegmentFormat.loadBigEndian(UInt32.self, from: buffer, at: 0))
            guard bytes.count == 4 + 16 * count else { return nil }
            var ranges: [ClosedRange<UInt64>] = []
            ranges.reserveCapacity(count)
            for index in 0..<count {
                let lower = SegmentFormat.loadBigEndian(UInt64.self, from: buffer, at: 4 + 16 * index)
                let upper = SegmentFormat.loadBigEndian(UInt64.self, from: buffer, at: 12 + 16 * index)
                guard lower <= upper else { return nil }
                ranges.append(lower...upper)
            }
            return ranges
        }
    }
}
