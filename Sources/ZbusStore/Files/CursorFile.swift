/// Where a record starts: record `sequence` begins at byte `offset` of the segment whose first sequence is `segment`.
struct RecordPosition: Sendable, Equatable {
    var segment: UInt64
    var offset: Int64
    var sequence: UInt64
}

/// The persisted read cursor of a queue: the committed sequence and a hint where the next record starts.
///
/// The file holds two 64-byte slots written alternately with `pwrite`, each with a generation number and its own
/// CRC-32C. A torn write can only damage the slot being written; loading takes the valid slot with the highest
/// generation, which is then the previous good cursor. The hint lets a restart resume reading without scanning a
/// segment from its start; it is only an optimisation, the committed sequence is what counts.
final class CursorFile {
    struct Cursor: Equatable {
        var committed: UInt64
        var hint: RecordPosition?
    }

    static let slotSize = 64
    private static let magic: [UInt8] = Array("ZCR1".utf8)
    private static let checkedBytes = 44

    let file: StoreFile
    private var generation: UInt64

    private init(file: StoreFile, generation: UInt64) {
        self.file = file
        self.generation = generation
    }

    /// Opens (creating if missing) the cursor file at `path` and loads the newest valid slot. `damaged` is set when
    /// the file had content but no valid slot.
    static func open(_ path: String) throws(QueueStoreError) -> (CursorFile, cursor: Cursor?, damaged: Bool) {
        let file = try StoreFile.openReadWrite(path, create: true)
        var bytes = [UInt8](repeating: 0, count: 2 * slotSize)
        let got = try file.read(into: &bytes, at: 0)
        var best: (generation: UInt64, cursor: Cursor)?
        bytes.withUnsafeBytes { buffer in
            for slot in 0..<2 where got >= (slot + 1) * slotSize {
                let view = UnsafeRawBufferPointer(rebasing: buffer[(slot * slotSize)..<((slot + 1) * slotSize)])
                guard let (generation, cursor) = decode(view) else { continue }
                if best == nil || generation > best!.generation { best = (generation, cursor) }
            }
        }
        let cursorFile = CursorFile(file: file, generation: best?.generation ?? 0)
        return (cursorFile, best?.cursor, best == nil && got > 0)
    }

    /// Writes `cursor` into the older slot. Durable only after the file is synced.
    func write(_ cursor: Cursor) throws(QueueStoreError) {
        generation &+= 1
        var bytes = CursorFile.magic
        SegmentFormat.appendBigEndian(generation, to: &bytes)
        SegmentFormat.appendBigEndian(cursor.committed, to: &bytes)
        let hint = cursor.hint ?? RecordPosition(segment: 0, offset: 0, sequence: 0)
        SegmentFormat.appendBigEndian(hint.segment, to: &bytes)
        SegmentFormat.appendBigEndian(UInt64(bitPattern: hint.offset), to: &bytes)
        SegmentFormat.appendBigEndian(hint.sequence, to: &bytes)
        SegmentFormat.appendBigEndian(CRC32C.checksum(bytes), to: &bytes)
        bytes.append(contentsOf: repeatElement(0, count: CursorFile.slotSize - bytes.count))
        let slot = Int64(generation & 1) * Int64(CursorFile.slotSize)
        try file.write(bytes, at: slot)
    }

    private static func decode(_ slot: UnsafeRawBufferPointer) -> (UInt64, Cursor)? {
        guard slot.prefix(4).elementsEqual(magic) else { return nil }
        let stored = SegmentFormat.loadBigEndian(UInt32.self, from: slot, at: checkedBytes)
        guard CRC32C.checksum(UnsafeRawBufferPointer(rebasing: slot[0..<checkedBytes])) == stored else { return nil }
        let generation = SegmentFormat.loadBigEndian(UInt64.self, from: slot, at: 4)
        let committed = SegmentFormat.loadBigEndian(UInt64.self, from: slot, at: 12)
        let segment = SegmentFormat.loadBigEndian(UInt64.self, from: slot, at: 20)
        let offset = Int64(bitPattern: SegmentFormat.loadBigEndian(UInt64.self, from: slot, at: 28))
        let sequence = SegmentFormat.loadBigEndian(UInt64.self, from: slot, at: 36)
        let hint = segment == 0 ? nil : RecordPosition(segment: segment, offset: offset, sequence: sequence)
        return (generation, Cursor(committed: committed, hint: hint))
    }
}

/// A small blob replaced atomically and checked on load: a queue's metadata (mode, token, ... as the broker encodes
/// them) and the acknowledgements above its read cursor that a clean close leaves for the next open.
///
/// Layout: a 4-byte magic, UInt32 BE length, UInt32 BE CRC-32C, bytes. A write goes to `<name>.tmp`, is synced,
/// renamed over `<name>`, and the directory is synced: a crash leaves either the old or the new blob, never a mix.
struct CheckedBlobFile {
    let fileName: String
    private let magic: [UInt8]

    var temporaryFileName: String { fileName + ".tmp" }

    /// The queue's metadata blob.
    static let metadata = CheckedBlobFile(fileName: "meta", magic: Array("ZBM1".utf8))
    /// Sequences acknowledged above the committed cursor when the queue was last closed cleanly.
    static let acknowledged = CheckedBlobFile(fileName: "acked", magic: Array("ZAK1".utf8))

    private init(fileName: String, magic: [UInt8]) {
        self.fileName = fileName
        self.magic = magic
    }

    /// The blob stored in `directory`, or `nil` when there is none.
    func load(directory: String) throws(QueueStoreError) -> [UInt8]? {
        let path = directory + "/" + fileName
        guard StoreFileSystem.exists(path) else { return nil }
        let file = try StoreFile.openReadOnly(path)
        let size = try file.size()
        guard size >= 12, size <= Int64(SegmentFormat.maxRecordBytes) else {
            throw .corruptFile(path: path, reason: "size \(size) bytes does not fit the format")
        }
        var bytes = [UInt8](repeating: 0, count: Int(size))
        let got = try file.read(into: &bytes, at: 0)
        guard got == Int(size), bytes.prefix(4).elementsEqual(magic) else {
            throw .corruptFile(path: path, reason: "bad magic (expected \(String(decoding: magic, as: UTF8.self)))")
        }
        let (length, stored) = bytes.withUnsafeBytes { buffer in
            (Int(SegmentFormat.loadBigEndian(UInt32.self, from: buffer, at: 4)),
             SegmentFormat.loadBigEndian(UInt32.self, from: buffer, at: 8))
        }
        guard length == Int(size) - 12 else {
            throw .corruptFile(path: path, reason: "length field \(length) but \(Int(size) - 12) bytes follow")
        }
        let blob = Array(bytes[12...])
        guard CRC32C.checksum(blob) == stored else { throw .corruptFile(path: path, reason: "CRC-32C mismatch") }
        return blob
    }

    /// Replaces the blob in `directory` with `bytes`, durably.
    func store(_ bytes: [UInt8], directory: String) throws(QueueStoreError) {
        let temporary = directory + "/" + temporaryFileName
        var content = magic
        SegmentFormat.appendBigEndian(UInt32(bytes.count), to: &content)
        SegmentFormat.appendBigEndian(CRC32C.checksum(bytes), to: &content)
        content.append(contentsOf: bytes)
        let file = try StoreFile.openReadWrite(temporary, create: true, truncate: true)
        try file.write(content, at: 0)
        try file.sync()
        try StoreFileSystem.rename(temporary, to: directory + "/" + fileName)
        try StoreFileSystem.syncDirectory(directory)
    }

    /// Removes the blob from `directory`, durably; nothing happens when there is none.
    func remove(directory: String) throws(QueueStoreError) {
        let path = directory + "/" + fileName
        guard StoreFileSystem.exists(path) else { return }
        try StoreFileSystem.unlink(path)
        try StoreFileSystem.syncDirectory(directory)
    }
}
