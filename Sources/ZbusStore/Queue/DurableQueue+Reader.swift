import Dispatch
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
    // MARK: - Reading

    /// Hands out the oldest record not handed out yet in this process, or `nil` when there is none.
    ///
    /// Each record is handed out once per process lifetime (see ``rewind()``); after a restart hand-out resumes after
    /// the committed sequence. A read error is logged and reported as `nil`; the position stays, so a later call
    /// tries again.
    ///
    /// On an event loop it never waits for the disk: records that are not in memory are read ahead on the store's
    /// I/O thread, `nil` is returned meanwhile, and the readable handler (``setReadableHandler(_:)``) is told when
    /// they are there.
    public func next() -> (sequence: UInt64, record: ByteBuffer)? {
        lock.withLock { () -> (sequence: UInt64, record: ByteBuffer)? in
            guard !closed, !readAheadPending else { return nil }
            do throws(QueueStoreError) {
                if let found = try readNext() { return found }
            } catch {
                if case .notCached(_, let offset) = error {
                    readAhead(at: offset)
                    return nil
                }
                logger.error("cannot read the queue", metadata: ["error": "\(error)"])
                reader.segment = nil
                readBuffer.invalidate()
                return nil
            }
            readBuffer.release()  // drained: give the memory back until there is a backlog again
            return nil
        }
    }

    func readNext() throws(QueueStoreError) -> (sequence: UInt64, record: ByteBuffer)? {
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
    func openReaderSegment() throws(QueueStoreError) -> Bool {
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
            let opened: (StoreFile, Int64)?
            if let recent = recentSegments[first] {
                opened = (recent.file, recent.size)
            } else if let prepared = preparedSegments.removeValue(forKey: first) {
                opened = prepared.map { ($0.file, $0.size) }
            } else if io != nil, BlockingIOCheck.isOnEventLoop {
                openAhead(first: first, path: path, waiting: true)
                throw .notCached(path: path, offset: 0)
            } else {
                opened = try openOlderSegment(path: path, first: first)
            }
            guard let opened else {
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
        // The segment after it is opened ahead on the I/O thread, so that the reader rarely waits for an open.
        if index + 1 < segments.count {
            let following = segments[index + 1]
            if following != writer?.first, recentSegments[following] == nil, preparedSegments[following] == nil {
                openAhead(first: following, path: directory + "/" + SegmentFormat.fileName(firstSequence: following), waiting: false)
            }
        }
        return true
    }

    /// Reads the bytes at `offset` of the reader's segment on the I/O thread, which brings them into the page cache,
    /// then tells the readable handler. Caller holds the lock.
    func readAhead(at offset: Int64) {
        guard let io, !readAheadPending else { return }
        guard let file = reader.segment?.file else { return }
        readAheadPending = true
        logger.debug("records not in memory; reading ahead on the store's I/O thread",
                     metadata: ["file": "\(file.path)", "offset": "\(offset)"])
        io.submit { _ in
            let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: ReadBuffer.maxChunk, alignment: 16)
            defer { scratch.deallocate() }
            do throws(QueueStoreError) {
                _ = try file.read(into: scratch, at: offset)
            } catch {
                self.readAheadFailed("cannot read the queue ahead", error: error, file: file.path)
                return
            }
            self.readAheadDone()
        }
    }

    /// Opens an older segment for the reader on the I/O thread (opening a file may wait for the disk). With
    /// `waiting`, the reader waits for it (``next()`` returns `nil` meanwhile) and the readable handler is told when
    /// it is open; otherwise it is opened ahead of the reader's need. Caller holds the lock.
    func openAhead(first: UInt64, path: String, waiting: Bool) {
        guard let io else { return }
        if waiting {
            guard !readAheadPending else { return }
            readAheadPending = true
        }
        logger.debug("opening an older segment on the store's I/O thread",
                     metadata: ["file": "\(path)", "reader": "\(waiting ? "waits" : "ahead")"])
        io.submit { _ in
            let buffer = ReadBuffer()
            var opened: (file: StoreFile, size: Int64)?
            do throws(QueueStoreError) {
                opened = try self.openOlderSegment(path: path, first: first, buffer: buffer).map { (file: $0.0, size: $0.1) }
            } catch {
                if waiting {
                    self.readAheadFailed("cannot open a segment", error: error, file: path)
                } else {
                    self.logger.error("cannot open a segment ahead of the reader", metadata: ["file": "\(path)", "error": "\(error)"])
                }
                return
            }
            self.lock.withLock {
                // Not if it was deleted meanwhile (consumed) or the queue closed.
                if !self.closed, self.segments.contains(first) { self.preparedSegments[first] = .some(opened) }
            }
            if waiting { self.readAheadDone() }
        }
    }

    private func readAheadDone() {
        let handler = lock.withLock { () -> (@Sendable () -> Void)? in
            readAheadPending = false
            readAheadFailures = 0
            return closed ? nil : readableHandler
        }
        handler?()
    }

    /// A read ahead or a waited-for open failed: the reader keeps waiting (``next()`` returns `nil`) for a pause that
    /// doubles with each failure in a row, from 50 ms up to 5 s, then the readable handler is told so that the MQ
    /// tries again. The pause is a timer off the I/O thread, which other queues' work keeps using meanwhile.
    static let readAheadRetryPause = (first: Int64(50), longest: Int64(5_000))

    func readAheadFailed(_ what: String, error: QueueStoreError, file: String) {
        let failures = lock.withLock { () -> Int in
            readAheadFailures += 1
            return readAheadFailures
        }
        let pause = min(Self.readAheadRetryPause.longest, Self.readAheadRetryPause.first << Int64(min(failures - 1, 16)))
        logger.error("\(what); trying again after a pause", metadata: [
            "file": "\(file)", "error": "\(error)", "failures in a row": "\(failures)", "pause": "\(pause) ms",
        ])
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(Int(pause))) {
            let handler = self.lock.withLock { () -> (@Sendable () -> Void)? in
                self.readAheadPending = false
                return self.closed ? nil : self.readableHandler
            }
            handler?()
        }
    }

    /// Opens a segment other than the writer's for reading and checks its header; `nil` (logged) when the file is
    /// missing or its header is damaged. Caller holds the lock, unless it passes a `buffer` of its own.
    func openOlderSegment(path: String, first: UInt64, buffer: ReadBuffer? = nil) throws(QueueStoreError) -> (StoreFile, Int64)? {
        let file: StoreFile
        do throws(QueueStoreError) {
            file = try StoreFile.openReadOnly(path)
        } catch {
            guard case .io(_, _, ENOENT) = error else { throw error }
            logger.error("segment file missing", metadata: ["file": "\(path)"])
            return nil
        }
        let size = try file.size()
        let header = try (buffer ?? readBuffer).bytes(of: file, at: 0, count: SegmentFormat.headerSize, limit: size)
        guard header.flatMap(SegmentFormat.parseHeader) == first else {
            logger.error("segment header damaged (bad magic or first sequence)", metadata: ["file": "\(path)"])
            return nil
        }
        return (file, size)
    }

    /// The index of the oldest segment that starts after `sequence`, or `nil` when none does (binary search: queues
    /// configured with small segments can have thousands). Caller holds the lock.
    func segmentIndex(after sequence: UInt64) -> Int? {
        var low = 0
        var high = segments.count
        while low < high {
            let middle = (low + high) / 2
            if segments[middle] > sequence { high = middle } else { low = middle + 1 }
        }
        return low < segments.count ? low : nil
    }

    func moveReader(to sequence: UInt64) {
        reader.target = max(reader.target, sequence)
        reader.segment = nil
    }

    struct Damage: Error {
        let text: String
    }

    /// The payload of a record whose framing was checked; a large one bypasses the read buffer and lands in its own
    /// buffer with one `pread`, verified on the way. A checksum mismatch is reported as damage.
    func readPayload(of file: StoreFile, at offset: Int64, length: Int, crc expected: UInt32, limit: Int64)
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
                got = try file.readWithoutWaitingOnEventLoops(into: view, at: offset)
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
    func remember(_ position: RecordPosition) {
        handedOut.append(position)
        if handedOut.count > DurableQueue.positionMemory { droppedPosition = handedOut.popFirst() }
    }

}
