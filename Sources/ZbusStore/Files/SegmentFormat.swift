/// The on-disk layout of segment files.
///
/// A segment is `ZBQ1` + the UInt64 (big-endian) sequence of its first record, followed by records framed as
/// `[UInt32 BE payload length][UInt32 BE CRC-32C of the payload][payload]`. Records carry no sequence number: a record's
/// sequence is the segment's first sequence plus its index. Segment files are named after their first sequence, padded
/// to 20 digits (`00000000000000000001.seg`), so names sort like the sequences and a restart learns every segment's
/// range from a directory listing without opening it.
enum SegmentFormat {
    static let magic: [UInt8] = Array("ZBQ1".utf8)
    /// Bytes before the first record.
    static let headerSize = 12
    /// Bytes before a record's payload.
    static let recordHeaderSize = 8
    /// The largest payload a record may have. Far above any message body limit; anything larger in a length field is
    /// damage, not data.
    static let maxRecordBytes = 1 << 30
    static let fileExtension = ".seg"

    /// `00000000000000000042.seg` for 42.
    static func fileName(firstSequence: UInt64) -> String {
        let digits = String(firstSequence)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits + fileExtension
    }

    /// The first sequence a segment file name stands for, or `nil` when the name is not a segment's.
    static func firstSequence(fileName: String) -> UInt64? {
        guard fileName.hasSuffix(fileExtension) else { return nil }
        let stem = fileName.dropLast(fileExtension.count)
        guard stem.utf8.count == 20, stem.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else {
            return nil
        }
        return UInt64(stem)
    }

    /// The header of a segment whose first record has sequence `firstSequence`.
    static func header(firstSequence: UInt64) -> [UInt8] {
        var bytes = magic
        appendBigEndian(firstSequence, to: &bytes)
        return bytes
    }

    /// The first sequence recorded in `header`, or `nil` when the magic is wrong.
    static func parseHeader(_ header: UnsafeRawBufferPointer) -> UInt64? {
        guard header.count >= headerSize, header.prefix(4).elementsEqual(magic) else { return nil }
        return loadBigEndian(UInt64.self, from: header, at: 4)
    }

    /// Fills the 8-byte record header for a payload of `length` bytes with checksum `crc`.
    static func recordHeader(length: Int, crc: UInt32) -> (UInt32, UInt32) {
        (UInt32(length).bigEndian, crc.bigEndian)
    }

    static func appendBigEndian<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
    }

    static func loadBigEndian<T: FixedWidthInteger>(_: T.Type, from bytes: UnsafeRawBufferPointer, at offset: Int) -> T {
        T(bigEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
    }
}

/// What a look at the record at some offset of a segment found.
enum RecordProbe {
    /// A whole record of `length` payload bytes whose stored checksum is `crc`; `verified` tells whether the payload
    /// was checked against it.
    case record(length: Int, crc: UInt32, verified: Bool)
    /// The segment ends exactly here.
    case end
    /// The bytes here are not a whole valid record; `reason` says why, for the log.
    case damaged(reason: String)
}

/// A read buffer over one file at a time: `pread`s chunks of up to 256 KiB and hands out views of them, so parsing
/// many small records costs one system call per chunk. It grows only as large as the data asks for (a reader that
/// follows the tail of a queue reads a few KiB at a time) and can be released while a queue is idle.
final class ReadBuffer {
    static let maxChunk = 256 * 1024

    private var storage: UnsafeMutableRawBufferPointer?
    private var source: StoreFile?
    private var start: Int64 = 0
    private var count = 0
    /// Reads only from the page cache when on an event loop, throwing ``QueueStoreError/notCached(path:offset:)``
    /// rather than waiting for the device (see ``BlockingIOCheck``).
    private let cachedOnEventLoops: Bool

    init(cachedOnEventLoops: Bool = false) {
        self.cachedOnEventLoops = cachedOnEventLoops
    }

    deinit { storage?.deallocate() }

    /// The `needed` bytes of `file` at `offset`, or `nil` when fewer than that exist before `limit` (or in the file).
    /// `needed` must not exceed ``maxChunk``. The view is valid until the next call.
    func bytes(of file: StoreFile, at offset: Int64, count needed: Int, limit: Int64) throws(QueueStoreError)
        -> UnsafeRawBufferPointer?
    {
        precondition(needed <= Self.maxChunk)
        guard offset + Int64(needed) <= limit else { return nil }
        if let storage, source === file, offset >= start, offset + Int64(needed) <= start + Int64(count) {
            let from = Int(offset - start)
            return UnsafeRawBufferPointer(rebasing: storage[from..<(from + needed)])
        }
        let want = Int(min(Int64(Self.maxChunk), limit - offset))
        if storage == nil || storage!.count < want {
            storage?.deallocate()
            var capacity = 4096
            while capacity < want { capacity <<= 1 }
            storage = .allocate(byteCount: min(capacity, Self.maxChunk), alignment: 16)
        }
        let storage = storage!
        source = nil
        let target = UnsafeMutableRawBufferPointer(rebasing: storage[0..<want])
        let got: Int
        if cachedOnEventLoops {
            got = try file.readWithoutWaitingOnEventLoops(into: target, at: offset)
        } else {
            got = try file.read(into: target, at: offset)
        }
        source = file
        start = offset
        count = got
        guard got >= needed else { return nil }
        return UnsafeRawBufferPointer(rebasing: storage[0..<needed])
    }

    /// Forgets the buffered bytes (they may be stale) and the file they came from.
    func invalidate() {
        source = nil
        count = 0
    }

    /// Frees the memory; the next read allocates again.
    func release() {
        invalidate()
        storage?.deallocate()
        storage = nil
    }

    /// Checks the record at `offset` of `file`, which holds `limit` bytes: its header, its length and, when its
    /// payload is at most `verifyUpTo` bytes, its checksum (streamed through the buffer, so records of any size cost
    /// no extra memory). A small verified payload is left in the buffer for the caller to copy.
    func probeRecord(of file: StoreFile, at offset: Int64, limit: Int64, verifyUpTo: Int) throws(QueueStoreError)
        -> RecordProbe
    {
        if offset == limit { return .end }
        guard let header = try bytes(of: file, at: offset, count: SegmentFormat.recordHeaderSize, limit: limit) else {
            return .damaged(reason: "torn record header: \(limit - offset) of \(SegmentFormat.recordHeaderSize) bytes")
        }
        let length = Int(SegmentFormat.loadBigEndian(UInt32.self, from: header, at: 0))
        let expected = SegmentFormat.loadBigEndian(UInt32.self, from: header, at: 4)
        if length == 0 { return .damaged(reason: "zero record length (zero-filled or overwritten bytes)") }
        if length > SegmentFormat.maxRecordBytes {
            return .damaged(reason: "absurd record length \(length) (limit \(SegmentFormat.maxRecordBytes))")
        }
        let payloadStart = offset + Int64(SegmentFormat.recordHeaderSize)
        let available = limit - payloadStart
        if Int64(length) > available {
            return .damaged(reason: "torn record: \(available) of \(length) payload bytes present")
        }
        guard length <= verifyUpTo else { return .record(length: length, crc: expected, verified: false) }
        var crc = CRC32C()
        var done = 0
        while done < length {
            let step = min(length - done, Self.maxChunk)
            guard let chunk = try bytes(of: file, at: payloadStart + Int64(done), count: step, limit: limit) else {
                return .damaged(reason: "torn record: file ends inside the payload of \(length) bytes")
            }
            crc.update(chunk)
            done += step
        }
        if crc.value != expected {
            return .damaged(reason: Self.mismatch(stored: expected, computed: crc.value))
        }
        return .record(length: length, crc: expected, verified: true)
    }

    /// The log text for a checksum mismatch.
    static func mismatch(stored: UInt32, computed: UInt32) -> String {
        "CRC-32C mismatch: stored 0x\(String(stored, radix: 16)), computed 0x\(String(computed, radix: 16))"
    }
}
