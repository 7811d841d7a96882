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

// Recovery on open: the newest segment's tail, the acknowledgements a clean close left.
extension DurableQueue {
    /// Reads the acknowledgements a clean close left above the cursor, keeps those that still name records
    /// (above `committed`, below `nextSequence`), and removes the file, durably, before any append: a sequence
    /// that a lost tail frees for a new record must never be taken for an acknowledged one after a later crash.
    /// A damaged file is logged and ignored (those records are delivered again: at-least-once).
    static func loadAcknowledgedAhead(directory: String, above committed: UInt64, below nextSequence: UInt64,
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
    static func recover(
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
    static func countFrames(_ file: StoreFile, from start: Int64, to end: Int64, buffer: ReadBuffer)
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
    static func isAllZeros(_ file: StoreFile, from start: Int64, to end: Int64, buffer: ReadBuffer)
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
}
