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

extension DurableQueue {
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
    func appendLocked(
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

    func check(length: Int) throws(QueueStoreError) {
        guard length > 0 else { throw .emptyRecord(queue: name) }
        guard length <= SegmentFormat.maxRecordBytes else {
            throw .recordTooLarge(queue: name, size: length, limit: SegmentFormat.maxRecordBytes)
        }
    }

    func needsRoll(writer: Writer, frameBytes: Int) -> Bool {
        writer.offset > Int64(SegmentFormat.headerSize) && writer.offset + Int64(frameBytes) > segmentBytes
    }

    /// The file the next `frameBytes` go to, after starting a new segment if the current one is full. Caller holds
    /// the lock.
    func prepareWriter(frameBytes: Int) throws(QueueStoreError) -> StoreFile {
        if let writer, !rollBeforeNextAppend, !needsRoll(writer: writer, frameBytes: frameBytes) { return writer.file }
        return try roll()
    }

    /// Starts a new segment whose first record gets `nextSequence`. Caller holds the lock.
    ///
    /// On an event loop no file is created here: the segment is the spare the I/O thread made ahead, and its renaming
    /// and the trimming of the previous segment go back to that thread. Without a spare yet, the current segment
    /// takes the records past its size until the spare is there (the size is a target, not a limit).
    func roll() throws(QueueStoreError) -> StoreFile {
        let first = nextSequence
        if let writer, writer.first == first {
            // The active segment is still empty (nothing was lost after all): keep it.
            rollBeforeNextAppend = false
            return writer.file
        }
        if let io, BlockingIOCheck.isOnEventLoop {
            if let file = try rollIntoSpare(first: first, io: io) { return file }
            requestSpare(io: io)
            if let writer, !rollBeforeNextAppend { return writer.file }
            logger.warning("no segment file made ahead; creating one on an event loop")
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
        }
        install(segment: file, first: first, path: path)
        return file
    }

    /// Makes `file` the writer's segment, starting at `first`. Caller holds the lock.
    private func install(segment file: StoreFile, first: UInt64, path: String) {
        if let previous = writer {
            if reader.segment?.first == previous.first { reader.segment!.size = previous.offset }
            recentSegments[previous.first] = (previous.file, previous.offset)
            if recentSegments.count > Self.recentSegmentLimit, let oldest = recentSegments.keys.min() {
                recentSegments[oldest] = nil
            }
            // Under group commit the old segment's tail must be synced no later than records in the new one.
            if policy == .always { syncer?.enqueue(previous.file, callback: nil) }
        }
        segments.append(first)
        writer = Writer(first: first, file: file, offset: Int64(SegmentFormat.headerSize))
        rollBeforeNextAppend = false
        logger.debug("started segment", metadata: ["file": "\(path)"])
    }

    /// Rolls into the spare segment, if one is ready: writes its header (a write into the page cache) and leaves the
    /// rest to the I/O thread. Caller holds the lock.
    private func rollIntoSpare(first: UInt64, io: NIOThreadPool) throws(QueueStoreError) -> StoreFile? {
        guard let file = spare else { return nil }
        spare = nil
        try file.write(SegmentFormat.header(firstSequence: first), at: 0)
        let previous = writer
        let sparePath = directory + "/" + Self.spareFileName
        let path = directory + "/" + SegmentFormat.fileName(firstSequence: first)
        install(segment: file, first: first, path: path)
        if policy == .always {
            // Its directory entry was synced when it was made; the header goes with the records' group commit.
            syncer?.enqueue(file, callback: nil)
        }
        // Renamed before the next spare is made (jobs run in order), and before any reader opens it by name: it is
        // the writer's segment (read through `writer.file`) until the next roll, which needs that next spare.
        io.submit { _ in
            guard !self.lock.withLock({ self.closed }) else { return }  // removed meanwhile: nothing to name
            do throws(QueueStoreError) {
                try StoreFileSystem.rename(sparePath, to: path)
                // Not needed before any acknowledgement (opening adopts a spare by its header): the policy's next sync.
                self.scheduleSync(file: self.directoryFile, callback: nil)
            } catch {
                // Opening the queue adopts a spare by its header, so records stay readable after a restart. The file
                // keeps the spare's name, so no other spare may be made (the job already queued behind this one too).
                self.lock.withLock { self.spareNameStuck = true }
                self.logger.error("cannot name a new segment file; segments grow past their size until a restart",
                                  metadata: ["file": "\(sparePath)", "error": "\(error)"])
            }
            if let previous { self.trimReservedTail(of: previous) }
        }
        requestSpare(io: io)
        return file
    }

    /// Has the I/O thread make the next spare segment, unless one is there or on its way. Caller holds the lock.
    func requestSpare(io: NIOThreadPool) {
        guard spare == nil, !spareRequested, !closed, !spareNameStuck else { return }
        spareRequested = true
        io.submit { _ in self.makeSpare() }
    }

    /// Creates the spare segment file (on the I/O thread): its directory entry is durable before it is used.
    private func makeSpare() {
        let path = directory + "/" + Self.spareFileName
        guard !lock.withLock({ closed || spareNameStuck }) else {
            lock.withLock { spareRequested = false }
            return
        }
        var made: StoreFile?
        do throws(QueueStoreError) {
            let file = try StoreFile.openReadWrite(path, create: true, truncate: true)
            if policy != .none { try directoryFile.sync() }
            made = file
        } catch {
            logger.error("cannot make a segment file ahead; segments grow past their size meanwhile",
                         metadata: ["file": "\(path)", "error": "\(error)"])
        }
        lock.withLock {
            spareRequested = false
            if !closed { spare = made }
        }
    }

    /// Under group commit, writes zeros ahead of the writer, a step at a time (at most to the segment size), so that
    /// the next appends up to `end` land on blocks that already exist (see ``StoreFile/fillWithZeros(from:to:)``). A
    /// write larger than a step is not preceded by zeros (that would double it); it extends the file itself. Only a
    /// performance measure: after a failure the file grows with each append. Caller holds the lock.
    func reserve(through end: Int64) {
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
            // Whatever part of the zeros landed goes, so that `.max` means "nothing after the last record" (on an
            // event loop they stay: zeros after the last record read as its end).
            if !BlockingIOCheck.isOnEventLoop { try? current.file.truncate(to: current.offset) }
            logger.debug("cannot write zeros ahead of the writer; the file grows with each append",
                         metadata: ["file": "\(current.file.path)"])
            writer!.reservedEnd = .max
        }
    }

    /// Cuts the reserved zeros after `writer`'s last record. A failure is logged: the zeros stay, and whoever reads
    /// the segment next takes them for its end (see ``recover(segment:first:buffer:policy:logger:)``).
    func trimReservedTail(of writer: Writer) {
        guard writer.reservedEnd > writer.offset, writer.reservedEnd != .max else { return }
        do {
            try writer.file.truncate(to: writer.offset)
        } catch {
            logger.error("cannot trim the reserved tail of a segment", metadata: ["file": "\(writer.file.path)", "error": "\(error)"])
        }
    }

    /// Removes the bytes of a failed write so that the file ends at the last whole record. Caller holds the lock.
    func undoPartialWrite(file: StoreFile, at offset: Int64) {
        if writer?.file === file { writer!.reservedEnd = offset }
        if BlockingIOCheck.isOnEventLoop {
            // Not cut here (that may wait for the disk): the next append overwrites the bytes, readers stop at the
            // writer's offset, and opening the queue after a crash cuts a torn tail.
            return
        }
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
    func scheduleSync(file: StoreFile, callback: StoreSyncer.Callback?) {
        switch policy {
        case .none: break
        case .interval: syncer?.markDirty(file)
        case .always: syncer?.enqueue(file, callback: callback)
        }
    }

}
