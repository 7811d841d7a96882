import Logging
import NIOCore
import Testing
import ZbusStore
import ZbusTestSupport

@Suite("QueueStore: recovery from torn and damaged files", .blockingIO(.light, reopensLockedFiles: true))
struct QueueStoreRecoveryTests {
    /// Record payloads of assorted lengths, so cut points fall in headers and payloads of different sizes.
    static let payloads = ["a", "bb", "a somewhat longer record", "ccc", String(repeating: "z", count: 37), "last one"]

    /// Builds a queue holding `payloads` in one segment and returns the segment's bytes.
    func makeSegment(_ directory: TemporaryDirectory, logs: CapturedLogs) throws -> [UInt8] {
        let store = try QueueStore(directory: directory.store, fsync: .none, logger: logs.logger())
        let queue = try store.open(name: "q", metadata: Array("m".utf8))
        for payload in Self.payloads { try queue.append(record(payload)) }
        store.close()
        return readFile(directory.store + "/q/" + segmentFileName(1))
    }

    @Test func tornTailAtEveryByteKeepsExactlyTheWholeRecords() throws {
        try TemporaryDirectory.with { directory in
            let setup = CapturedLogs()
            let original = try makeSegment(directory, logs: setup)
            let ends = recordEnds(ofSegment: original)
            #expect(ends.count == Self.payloads.count)
            #expect(ends.last == original.count)
            let segmentPath = directory.store + "/q/" + segmentFileName(1)

            // Every cut from just after the header to one byte short of the whole file.
            for cut in 12..<original.count {
                writeFile(segmentPath, Array(original[0..<cut]))
                let logs = CapturedLogs()
                let kept = ends.filter { $0 <= cut }.count
                let isBoundary = cut == 12 || ends.contains(cut)

                var store = try QueueStore(directory: directory.store, fsync: .none, logger: logs.logger())
                var queue = try store.open(name: "q", metadata: nil)
                #expect(queue.lastSequence == UInt64(kept), "cut at \(cut)")
                let items = queue.drain()
                #expect(items.map(\.sequence) == Array(0..<UInt64(kept)).map { $0 + 1 }, "cut at \(cut)")
                #expect(items.map { text($0.record) } == Array(Self.payloads.prefix(kept)), "cut at \(cut)")
                if isBoundary {
                    #expect(logs.problems.isEmpty, "a cut on a record boundary is a clean end (cut at \(cut))")
                } else {
                    let report = logs.problems.first { $0.message.contains("cutting damaged segment tail") }
                    #expect(report != nil, "cut at \(cut) must be logged")
                    #expect(report?.metadata["file"] == segmentPath)
                    #expect(report?.metadata["offset"] == String(ends.last { $0 <= cut } ?? 12))
                }
                #expect(readFile(segmentPath).count == (ends.last { $0 <= cut } ?? 12), "file truncated at the last good record")

                // Appends continue right after the last whole record, with the next sequence.
                #expect(try queue.append(record("new")) == UInt64(kept + 1), "cut at \(cut)")
                #expect(queue.drainTexts() == ["new"])
                store.close()

                store = try QueueStore(directory: directory.store, fsync: .none, logger: logs.logger())
                queue = try store.open(name: "q", metadata: nil)
                #expect(queue.drainTexts() == Array(Self.payloads.prefix(kept)) + ["new"], "cut at \(cut)")
                store.close()
            }
            writeFile(segmentPath, original)
        }
    }

    @Test func flippedByteInTheLastRecordIsDetectedAndCut() throws {
        try TemporaryDirectory.with { directory in
            let original = try makeSegment(directory, logs: CapturedLogs())
            let ends = recordEnds(ofSegment: original)
            let lastStart = ends[ends.count - 2]
            let segmentPath = directory.store + "/q/" + segmentFileName(1)

            // Flip every byte of the last record in turn: its length, its CRC and its payload.
            for position in lastStart..<original.count {
                var damaged = original
                damaged[position] ^= 0x5A
                writeFile(segmentPath, damaged)
                let logs = CapturedLogs()
                let store = try QueueStore(directory: directory.store, fsync: .none, logger: logs.logger())
                let queue = try store.open(name: "q", metadata: nil)
                #expect(queue.drainTexts() == Array(Self.payloads.dropLast()), "flip at \(position)")
                #expect(logs.problems.contains { $0.message.contains("cutting damaged segment tail") }, "flip at \(position)")
                #expect(try queue.append(record("again")) == UInt64(Self.payloads.count))
                store.close()
            }
            // A payload flip is reported as a checksum mismatch.
            var damaged = original
            damaged[original.count - 1] ^= 1
            writeFile(segmentPath, damaged)
            let logs = CapturedLogs()
            let store = try QueueStore(directory: directory.store, fsync: .none, logger: logs.logger())
            _ = try store.open(name: "q", metadata: nil)
            #expect(logs.problems.contains { $0.message.contains("CRC-32C mismatch") })
            store.close()
        }
    }

    @Test func zeroFilledTailIsTrimmedQuietlyUnderGroupCommitAndReportedOtherwise() throws {
        try TemporaryDirectory.with { directory in
            let original = try makeSegment(directory, logs: CapturedLogs())
            let segmentPath = directory.store + "/q/" + segmentFileName(1)
            // What a crash leaves of the zeros group commit writes ahead of the writer: no record started there.
            writeFile(segmentPath, original + [UInt8](repeating: 0, count: 4096))
            let logs = CapturedLogs()
            let store = try QueueStore(directory: directory.store, fsync: .always, logger: logs.logger())
            let queue = try store.open(name: "q", metadata: nil)
            #expect(queue.drainTexts() == Self.payloads)
            #expect(logs.problems.isEmpty, "zeros written ahead are not damage")
            #expect(readFile(segmentPath) == original)
            store.close()
            // Fewer zeros than a record header are a torn header, whatever the policy.
            writeFile(segmentPath, original + [0, 0, 0])
            let torn = CapturedLogs()
            let again = try QueueStore(directory: directory.store, fsync: .always, logger: torn.logger())
            #expect(try again.open(name: "q", metadata: nil).drainTexts() == Self.payloads)
            #expect(torn.problems.contains { $0.message.contains("cutting damaged segment tail") })
            again.close()
            // Under the other policies nothing writes zeros ahead: a zero tail is a size that grew before its data
            // came (records that were never synced), and it is reported.
            writeFile(segmentPath, original + [UInt8](repeating: 0, count: 4096))
            let lost = CapturedLogs()
            let other = try QueueStore(directory: directory.store, fsync: .none, logger: lost.logger())
            #expect(try other.open(name: "q", metadata: nil).drainTexts() == Self.payloads)
            #expect(lost.problems.contains { $0.message.contains("zero record length") })
            #expect(readFile(segmentPath) == original)
            other.close()
        }
    }

    @Test func segmentsReserveSpaceAheadAndEndExactlyAtTheirLastRecord() throws {
        try TemporaryDirectory.with { directory in
            let store = try QueueStore(directory: directory.store, fsync: .always, segmentBytes: 300, logger: CapturedLogs().logger())
            let queue = try store.open(name: "q", metadata: nil)
            for index in 1...40 { try queue.append(record("record-\(index)")) }
            let queueDirectory = directory.store + "/q"
            let files = segmentFiles(queueDirectory)
            #expect(files.count > 2)
            // Under group commit: rolled segments end at their last record; the writer's has zeros ahead (up to the
            // segment size).
            for name in files.dropLast() {
                let bytes = readFile(queueDirectory + "/" + name)
                #expect(recordEnds(ofSegment: bytes).last == bytes.count, "\(name) ends at its last record")
            }
            #expect(readFile(queueDirectory + "/" + files.last!).count == 300)
            #expect(queue.drainTexts() == (1...40).map { "record-\($0)" })
            store.close()
            let bytes = readFile(queueDirectory + "/" + files.last!)
            #expect(recordEnds(ofSegment: bytes).last == bytes.count, "a clean close trims the reserved zeros")
        }
    }

    @Test func zerosAheadNeverOverwriteRecordsAroundALargeOne() throws {
        // Under group commit, a record larger than the zero-fill step is written without zeros before it; the zeros after it must start
        // at its end, not where the earlier fill stopped.
        try TemporaryDirectory.with { directory in
            var store = try QueueStore(directory: directory.store, fsync: .always, logger: CapturedLogs().logger())
            var queue = try store.open(name: "q", metadata: nil)
            let large = String(repeating: "L", count: 3 << 20)
            let texts = ["small-1", large, "small-2", "small-3"]
            for text in texts { try queue.append(record(text)) }
            #expect(queue.drainTexts() == texts)
            store.close()
            store = try QueueStore(directory: directory.store, fsync: .always, logger: CapturedLogs().logger())
            queue = try store.open(name: "q", metadata: nil)
            #expect(queue.drainTexts() == texts)
            try queue.appendBatch([record("batch-1"), record(large), record("batch-2")])
            store.close()
            store = try QueueStore(directory: directory.store, fsync: .always, logger: CapturedLogs().logger())
            queue = try store.open(name: "q", metadata: nil)
            #expect(queue.drainTexts() == texts + ["batch-1", large, "batch-2"])
            store.close()
        }
    }

    @Test func absurdLengthIsCut() throws {
        try TemporaryDirectory.with { directory in
            let original = try makeSegment(directory, logs: CapturedLogs())
            let segmentPath = directory.store + "/q/" + segmentFileName(1)
            writeFile(segmentPath, original + [0xFF, 0xFF, 0xFF, 0xF0, 1, 2, 3, 4, 5, 6, 7, 8])
            let logs = CapturedLogs()
            let store = try QueueStore(directory: directory.store, fsync: .none, logger: logs.logger())
            let queue = try store.open(name: "q", metadata: nil)
            #expect(queue.drainTexts() == Self.payloads)
            #expect(logs.problems.contains { $0.message.contains("absurd record length") })
            store.close()
        }
    }

    @Test func damageInAnOlderSegmentSkipsToTheNextSegment() throws {
        try TemporaryDirectory.with { directory in
            var store = try QueueStore(directory: directory.store, fsync: .none, segmentBytes: 120, logger: CapturedLogs().logger())
            var queue = try store.open(name: "q", metadata: nil)
            for index in 1...30 { try queue.append(record("record-\(index)")) }
            store.close()
            let queueDirectory = directory.store + "/q"
            let files = segmentFiles(queueDirectory)
            #expect(files.count >= 4)
            // Damage the second record of the second segment.
            let victim = queueDirectory + "/" + files[1]
            let victimFirst = UInt64(files[1].dropLast(4))!
            let nextFirst = UInt64(files[2].dropLast(4))!
            var bytes = readFile(victim)
            let ends = recordEnds(ofSegment: bytes)
            bytes[ends[0] + 8] ^= 0xFF  // first payload byte of the second record
            writeFile(victim, bytes)

            let logs = CapturedLogs()
            store = try QueueStore(directory: directory.store, fsync: .none, segmentBytes: 120, logger: logs.logger())
            queue = try store.open(name: "q", metadata: nil)
            let items = queue.drain()
            let expected = Array(1...victimFirst) + Array(nextFirst...30)
            #expect(items.map(\.sequence) == expected)
            #expect(items.map { text($0.record) } == expected.map { "record-\($0)" })
            let report = logs.problems.first { $0.message.contains("damaged record") }
            #expect(report?.metadata["file"] == victim)
            #expect(report?.metadata["offset"] == String(ends[0]))
            store.close()
        }
    }

    @Test func unreadableOrMissingOlderSegmentsAreSkipped() throws {
        try TemporaryDirectory.with { directory in
            var store = try QueueStore(directory: directory.store, fsync: .none, segmentBytes: 120, logger: CapturedLogs().logger())
            var queue = try store.open(name: "q", metadata: nil)
            for index in 1...40 { try queue.append(record("record-\(index)")) }
            store.close()
            let queueDirectory = directory.store + "/q"
            let files = segmentFiles(queueDirectory)
            #expect(files.count >= 6)
            let firsts = files.map { UInt64($0.dropLast(4))! }
            var header = readFile(queueDirectory + "/" + files[1])
            header[0] = UInt8(ascii: "X")  // bad magic
            writeFile(queueDirectory + "/" + files[1], header)
            removeTree(queueDirectory + "/" + files[3])  // gone before the restart: a gap between segments

            let logs = CapturedLogs()
            store = try QueueStore(directory: directory.store, fsync: .none, segmentBytes: 120, logger: logs.logger())
            queue = try store.open(name: "q", metadata: nil)
            removeTree(queueDirectory + "/" + files[4])  // gone while the queue is open
            let expected = Array(1..<firsts[1]) + Array(firsts[2]..<firsts[3]) + Array(firsts[5]...40)
            #expect(queue.drain().map(\.sequence) == expected)
            #expect(logs.problems.contains { $0.message.contains("segment header damaged") })
            #expect(logs.problems.contains { $0.message.contains("segment ends before its last record") })
            #expect(logs.problems.contains { $0.message.contains("segment file missing") })
            queue.commit(through: 40)
            #expect(segmentFiles(queueDirectory).count == 1, "skipped segments are deleted once consumed")
            store.close()
        }
    }

    @Test func tornCursorWriteFallsBackToThePreviousSlot() throws {
        try TemporaryDirectory.with { directory in
            var store = try QueueStore(directory: directory.store, fsync: .none, logger: CapturedLogs().logger())
            var queue = try store.open(name: "q", metadata: nil)
            for index in 1...10 { try queue.append(record("r\(index)")) }
            for _ in 1...10 { _ = queue.next() }
            queue.commit(through: 3)  // generation 1, slot 1
            queue.commit(through: 7)  // generation 2, slot 0
            store.close()

            let cursorPath = directory.store + "/q/cursor"
            var cursor = readFile(cursorPath)
            #expect(cursor.count == 128)
            cursor[20] ^= 0xFF  // damage the newest slot
            writeFile(cursorPath, cursor)
            store = try QueueStore(directory: directory.store, fsync: .none, logger: CapturedLogs().logger())
            queue = try store.open(name: "q", metadata: nil)
            #expect(queue.committedSequence == 3)
            #expect(queue.drain().map(\.sequence) == Array(4...10))
            queue.commit(through: 5)  // overwrites the older slot (generation 2 again, as the damaged one never counted)
            store.close()

            store = try QueueStore(directory: directory.store, fsync: .none, logger: CapturedLogs().logger())
            queue = try store.open(name: "q", metadata: nil)
            #expect(queue.committedSequence == 5)
            store.close()

            // Both slots damaged: everything stored is delivered again, and it is logged.
            writeFile(cursorPath, [UInt8](repeating: 0xAB, count: 128))
            let logs = CapturedLogs()
            store = try QueueStore(directory: directory.store, fsync: .none, logger: logs.logger())
            queue = try store.open(name: "q", metadata: nil)
            #expect(queue.committedSequence == 0)
            #expect(queue.drain().count == 10)
            #expect(logs.problems.contains { $0.message.contains("cursor damaged") })
            store.close()
        }
    }

    @Test func lostTailBelowTheCursorNeverReusesSequences() throws {
        // The cursor reached the disk but the newest records did not (an unsynced tail after a power loss).
        try TemporaryDirectory.with { directory in
            let original = try makeSegment(directory, logs: CapturedLogs())
            var store = try QueueStore(directory: directory.store, fsync: .none, logger: CapturedLogs().logger())
            var queue = try store.open(name: "q", metadata: nil)
            for _ in Self.payloads { _ = queue.next() }
            queue.commit(through: UInt64(Self.payloads.count))
            store.close()
            let ends = recordEnds(ofSegment: original)
            writeFile(directory.store + "/q/" + segmentFileName(1), Array(original[0..<ends[1]]))  // 2 records left

            let logs = CapturedLogs()
            store = try QueueStore(directory: directory.store, fsync: .none, logger: logs.logger())
            queue = try store.open(name: "q", metadata: nil)
            #expect(queue.next() == nil)
            #expect(queue.unconsumedCount == 0)
            let next = UInt64(Self.payloads.count + 1)
            #expect(try queue.append(record("after")) == next)
            #expect(queue.next()?.sequence == next)
            #expect(segmentFiles(directory.store + "/q").contains(segmentFileName(next)))
            #expect(logs.problems.contains { $0.message.contains("missing") })
            store.close()

            store = try QueueStore(directory: directory.store, fsync: .none, logger: CapturedLogs().logger())
            queue = try store.open(name: "q", metadata: nil)
            let items = queue.drain()
            #expect(items.map(\.sequence) == [next])
            #expect(items.map { text($0.record) } == ["after"])
            store.close()
        }
    }

    @Test func tornSegmentHeaderIsRewritten() throws {
        try TemporaryDirectory.with { directory in
            var store = try QueueStore(directory: directory.store, fsync: .none, segmentBytes: 64, logger: CapturedLogs().logger())
            var queue = try store.open(name: "q", metadata: nil)
            for index in 1...6 { try queue.append(record("record-\(index)-xxxxxxxx")) }
            store.close()
            let files = segmentFiles(directory.store + "/q")
            let newest = directory.store + "/q/" + files.last!
            let newestFirst = UInt64(files.last!.dropLast(4))!
            writeFile(newest, Array(readFile(newest).prefix(5)))  // crashed while creating the segment

            store = try QueueStore(directory: directory.store, fsync: .none, segmentBytes: 64, logger: CapturedLogs().logger())
            queue = try store.open(name: "q", metadata: nil)
            #expect(queue.drain().map(\.sequence) == Array(1..<newestFirst))
            #expect(try queue.append(record("next")) == newestFirst)
            store.close()
            store = try QueueStore(directory: directory.store, fsync: .none, segmentBytes: 64, logger: CapturedLogs().logger())
            queue = try store.open(name: "q", metadata: nil)
            #expect(queue.drain().map(\.sequence) == Array(1...newestFirst))
            store.close()
        }
    }
}
