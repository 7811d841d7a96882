import Logging
import NIOCore
import Testing
import ZbusStore
import ZbusTestSupport

/// Two recovery findings: a stray segment file without records must not hide intact records, and a cut tail must say
/// how many records it took.
@Suite("QueueStore: stray empty segments and counted cuts", .blockingIO(.light, reopensLockedFiles: true))
struct QueueStoreStrayAndCutTests {
    static let payloads = (1...6).map { "record-\($0)" }

    /// A queue `q` holding `payloads` (one segment unless `segmentBytes` makes it roll).
    func fill(_ directory: TemporaryDirectory, segmentBytes: Int? = nil) throws {
        let store = try segmentBytes.map {
            try QueueStore(directory: directory.store, fsync: .none, segmentBytes: $0, logger: CapturedLogs().logger())
        } ?? QueueStore(directory: directory.store, fsync: .none, logger: CapturedLogs().logger())
        let queue = try store.open(name: "q", metadata: nil)
        for payload in Self.payloads { try queue.append(record(payload)) }
        store.close()
    }

    @Test("an empty or torn stray segment, named inside or beyond the records, hides none of them", arguments: [
        (UInt64(3), 0), (3, 5), (6, 0), (7, 0), (1000, 0), (1000, 11),
    ])
    func straySegmentHidesNothing(first: UInt64, size: Int) throws {
        try TemporaryDirectory.with { directory in
            try fill(directory)
            let stray = directory.store + "/q/" + segmentFileName(first)
            writeFile(stray, [UInt8](repeating: 0x51, count: size))

            let logs = CapturedLogs()
            var store = try QueueStore(directory: directory.store, fsync: .none, logger: logs.logger())
            var queue = try store.open(name: "q", metadata: nil)
            let items = queue.drain()
            #expect(items.map(\.sequence) == Array(1...6), "stray \(first) of \(size) bytes")
            #expect(items.map { text($0.record) } == Self.payloads)
            #expect(!fileExists(stray), "the stray file is removed")
            #expect(logs.problems.contains { $0.message.contains("holds no record") && $0.metadata["file"] == stray })
            #expect(!logs.problems.contains { $0.message.contains("missing") }, "nothing is reported lost")
            // Sequences continue after the last record: none is taken twice.
            #expect(try queue.append(record("next")) == 7)
            store.close()

            store = try QueueStore(directory: directory.store, fsync: .none, logger: CapturedLogs().logger())
            queue = try store.open(name: "q", metadata: nil)
            #expect(queue.drainTexts() == Self.payloads + ["next"])
            store.close()
        }
    }

    @Test("a stray inside the newest of several segments hides nothing either")
    func strayAmongSeveralSegments() throws {
        try TemporaryDirectory.with { directory in
            try fill(directory, segmentBytes: 64)
            let files = segmentFiles(directory.store + "/q")
            #expect(files.count > 1)
            let newestFirst = UInt64(files.last!.dropLast(4))!
            #expect(newestFirst < 6)
            let stray = directory.store + "/q/" + segmentFileName(6)
            if newestFirst < 6 { writeFile(stray, []) }

            let store = try QueueStore(directory: directory.store, fsync: .none, segmentBytes: 64, logger: CapturedLogs().logger())
            let queue = try store.open(name: "q", metadata: nil)
            #expect(queue.drainTexts() == Self.payloads)
            #expect(try queue.append(record("next")) == 7)
            store.close()
        }
    }

    @Test("a damaged tail is logged with the number of records and bytes it cut")
    func cutIsCounted() throws {
        try TemporaryDirectory.with { directory in
            try fill(directory)
            let path = directory.store + "/q/" + segmentFileName(1)
            let original = readFile(path)
            let ends = recordEnds(ofSegment: original)

            // A flipped payload byte in record 3: records 3...6 go (the damaged one and the three behind it).
            var flipped = original
            flipped[ends[1] + 9] ^= 0x20
            writeFile(path, flipped)
            var report = try cutReport(directory)
            #expect(report?.metadata["records_cut"] == "4")
            #expect(report?.metadata["cut_bytes"] == String(original.count - ends[1]))
            #expect(report?.metadata["file"] == path)
            #expect(report?.metadata["mq"] == "q")
            #expect(report?.message.contains("4 records lost (3..<7)") == true, "\(report?.message ?? "no report")")

            // A tail torn inside the last record: one record lost.
            writeFile(path, Array(original[0..<(original.count - 3)]))
            report = try cutReport(directory)
            #expect(report?.metadata["records_cut"] == "1")
            #expect(report?.message.contains("1 records lost (6..<7)") == true, "\(report?.message ?? "no report")")

            // A garbled length: what lies behind it cannot be walked, so the count is a lower bound.
            var garbled = original
            garbled[ends[3]] = 0xFF
            writeFile(path, garbled)
            report = try cutReport(directory)
            #expect(report?.metadata["records_cut"] == "at least 1")
            #expect(report?.message.contains("at least 1 records lost") == true, "\(report?.message ?? "no report")")
        }
    }

    /// Opens the store once and returns the report of the cut it made.
    func cutReport(_ directory: TemporaryDirectory) throws -> CapturedLogs.Entry? {
        let logs = CapturedLogs()
        let store = try QueueStore(directory: directory.store, fsync: .none, logger: logs.logger())
        _ = try store.open(name: "q", metadata: nil)
        store.close()
        return logs.problems.first { $0.message.contains("cutting damaged segment tail") }
    }
}
