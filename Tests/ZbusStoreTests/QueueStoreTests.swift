import Logging
import NIOCore
import Testing
import ZbusStore
import ZbusTestSupport

@Suite("QueueStore: queues, sequences, cursor, segments", .blockingIO(.light, reopensLockedFiles: true))
struct QueueStoreTests {
    let logs = CapturedLogs()

    func makeStore(_ directory: TemporaryDirectory, fsync: FsyncPolicy = .none, segmentBytes: Int = 64 << 20) throws
        -> QueueStore
    {
        try QueueStore(directory: directory.store, fsync: fsync, segmentBytes: segmentBytes, logger: logs.logger())
    }

    @Test func appendThenNextIsFIFO() throws {
        try TemporaryDirectory.with { directory in
            let store = try makeStore(directory)
            defer { store.close() }
            let queue = try store.open(name: "Orders", metadata: nil)
            #expect(queue.next() == nil)
            for index in 1...100 {
                let sequence = try queue.append(record("message \(index)"))
                #expect(sequence == UInt64(index))
            }
            #expect(queue.pendingCount == 100)
            #expect(queue.unconsumedCount == 100)
            let drained = queue.drain()
            #expect(drained.map(\.sequence) == Array(1...100))
            #expect(drained.map { text($0.record) } == (1...100).map { "message \($0)" })
            #expect(queue.next() == nil)
            #expect(queue.pendingCount == 0)
            #expect(queue.unconsumedCount == 100, "handed out is not consumed until committed")

            // Interleaved appends and reads follow the tail.
            for index in 101...110 {
                try queue.append(record("message \(index)"))
                let item = try #require(queue.next())
                #expect(item.sequence == UInt64(index))
                #expect(text(item.record) == "message \(index)")
            }
            #expect(store.queueNames() == ["Orders"])
        }
    }

    @Test func sequencesAreMonotonicAcrossReopen() throws {
        try TemporaryDirectory.with { directory in
            var store = try makeStore(directory)
            var queue = try store.open(name: "q", metadata: nil)
            for _ in 0..<5 { try queue.append(record("x")) }
            queue.commit(through: 5)
            store.close()

            store = try makeStore(directory)
            queue = try store.open(name: "q", metadata: nil)
            #expect(queue.lastSequence == 5)
            #expect(queue.unconsumedCount == 0)
            #expect(try queue.append(record("y")) == 6)
            store.close()

            store = try makeStore(directory)
            queue = try store.open(name: "q", metadata: nil)
            #expect(try queue.append(record("z")) == 7)
            #expect(queue.drainTexts() == ["y", "z"])
            store.close()
        }
    }

    @Test func sequencesAreSixtyFourBit() throws {
        try TemporaryDirectory.with { directory in
            // A queue whose only segment starts beyond 2^32, as a long-lived queue would have.
            let first: UInt64 = 5_000_000_000
            let queueDirectory = directory.store + "/big"
            _ = try makeStore(directory)  // creates the store directory
            mkdirOrFail(queueDirectory)
            var header = Array("ZBQ1".utf8)
            withUnsafeBytes(of: first.bigEndian) { header.append(contentsOf: $0) }
            writeFile(queueDirectory + "/" + segmentFileName(first), header)

            var store = try makeStore(directory)
            var queue = try store.open(name: "big", metadata: nil)
            #expect(try queue.append(record("a")) == first)
            #expect(try queue.append(record("b")) == first + 1)
            #expect(queue.next()?.sequence == first)
            queue.commit(through: first)
            store.close()

            store = try makeStore(directory)
            queue = try store.open(name: "big", metadata: nil)
            #expect(queue.committedSequence == first)
            #expect(queue.unconsumedCount == 1)
            let item = try #require(queue.next())
            #expect(item.sequence == first + 1)
            #expect(text(item.record) == "b")
            #expect(try queue.append(record("c")) == first + 2)
            store.close()
        }
    }

    @Test func restartRedeliversOnlyUncommittedRecords() throws {
        try TemporaryDirectory.with { directory in
            var store = try makeStore(directory)
            var queue = try store.open(name: "q", metadata: nil)
            for index in 1...10 { try queue.append(record("r\(index)")) }
            for _ in 1...6 { _ = queue.next() }  // handed out 1...6
            queue.commit(through: 4)  // acknowledged 1...4
            #expect(queue.unconsumedCount == 6)
            #expect(queue.pendingCount == 4)
            store.close()

            store = try makeStore(directory)
            queue = try store.open(name: "q", metadata: nil)
            #expect(queue.committedSequence == 4)
            #expect(queue.unconsumedCount == 6)
            #expect(queue.pendingCount == 6)
            let drained = queue.drain()
            #expect(drained.map(\.sequence) == Array(5...10), "5 and 6 come again (at-least-once), 1...4 never")
            #expect(drained.map { text($0.record) } == (5...10).map { "r\($0)" })
            store.close()
        }
    }

    @Test func commitsOutOfStepWithHandOutResumeExactly() throws {
        // Commits that lag hand-out, commits beyond it, and a restart after each: the cursor hint must never skip or
        // repeat a committed record.
        try TemporaryDirectory.with { directory in
            var store = try makeStore(directory, segmentBytes: 200)
            var queue = try store.open(name: "q", metadata: nil)
            for index in 1...60 { try queue.append(record("r\(index)")) }
            for _ in 1...30 { _ = queue.next() }
            queue.commit(through: 12)
            queue.commit(through: 11)  // smaller: ignored
            #expect(queue.committedSequence == 12)
            queue.commit(through: 40)  // beyond hand-out: skips ahead
            #expect(queue.next()?.sequence == 41)
            store.close()

            store = try makeStore(directory, segmentBytes: 200)
            queue = try store.open(name: "q", metadata: nil)
            #expect(queue.drain().map(\.sequence) == Array(41...60))
            queue.commit(through: 1_000)  // clamped to the newest record
            #expect(queue.committedSequence == 60)
            #expect(queue.unconsumedCount == 0)
            store.close()

            store = try makeStore(directory, segmentBytes: 200)
            queue = try store.open(name: "q", metadata: nil)
            #expect(queue.next() == nil)
            #expect(try queue.append(record("r61")) == 61)
            store.close()
        }
    }

    @Test func acknowledgementsAboveTheCursorSurviveACleanClose() throws {
        try TemporaryDirectory.with { directory in
            var store = try makeStore(directory)
            var queue = try store.open(name: "q", metadata: nil)
            for index in 1...10 { try queue.append(record("r\(index)")) }
            for _ in 1...8 { _ = queue.next() }
            queue.commit(through: 2)
            // 3 and 6 are still held; 4, 5, 7 and 8 were acknowledged out of order.
            queue.noteAcknowledged([4...5, 7...8])
            #expect(queue.unconsumedCount == 4)
            store.close()
            let acknowledgedFile = directory.store + "/q/acked"
            #expect(fileExists(acknowledgedFile))

            store = try makeStore(directory)
            queue = try store.open(name: "q", metadata: nil)
            #expect(!fileExists(acknowledgedFile), "read and removed on open: a crash from here on redelivers, never skips")
            #expect(queue.committedSequence == 2)
            #expect(queue.unconsumedCount == 4)
            #expect(queue.pendingCount == 4)
            #expect(queue.drain().map(\.sequence) == [3, 6, 9, 10])
            queue.rewind()
            #expect(queue.drain().map(\.sequence) == [3, 6, 9, 10], "a rewind still skips them")
            store.close()  // nothing committed: the ranges are written again

            store = try makeStore(directory)
            queue = try store.open(name: "q", metadata: nil)
            #expect(queue.drainTexts() == ["r3", "r6", "r9", "r10"])
            queue.commit(through: 10)
            store.close()
            #expect(!fileExists(acknowledgedFile), "the cursor passed them: nothing left to keep")

            store = try makeStore(directory)
            queue = try store.open(name: "q", metadata: nil)
            #expect(queue.next() == nil)
            store.close()
        }
    }

    @Test func acknowledgementsAboveALostTailNeverSkipTheRecordsThatReuseTheirSequences() throws {
        try TemporaryDirectory.with { directory in
            var store = try makeStore(directory)
            var queue = try store.open(name: "q", metadata: nil)
            for index in 1...10 { try queue.append(record("r\(index)")) }
            for _ in 1...10 { _ = queue.next() }
            queue.noteAcknowledged([2...10])
            store.close()
            // The tail from record 8 on is lost (unsynced when the machine went down).
            let segment = directory.store + "/q/" + segmentFileName(1)
            let bytes = readFile(segment)
            writeFile(segment, Array(bytes.prefix(recordEnds(ofSegment: bytes)[6])))

            store = try makeStore(directory)
            queue = try store.open(name: "q", metadata: nil)
            #expect(queue.drain().map(\.sequence) == [1])
            for index in 8...9 { #expect(try queue.append(record("new\(index)")) == UInt64(index)) }
            #expect(queue.drainTexts() == ["new8", "new9"], "8 and 9 name new records now: they are not skipped")
            store.close()
        }
    }

    @Test func damagedAcknowledgementsFileIsReportedAndEverythingUncommittedIsDelivered() throws {
        try TemporaryDirectory.with { directory in
            var store = try makeStore(directory)
            var queue = try store.open(name: "q", metadata: nil)
            for index in 1...5 { try queue.append(record("r\(index)")) }
            for _ in 1...5 { _ = queue.next() }
            queue.noteAcknowledged([2...3])
            store.close()
            let acknowledgedFile = directory.store + "/q/acked"
            var bytes = readFile(acknowledgedFile)
            bytes[bytes.count - 1] ^= 0x40
            writeFile(acknowledgedFile, bytes)

            store = try makeStore(directory)
            queue = try store.open(name: "q", metadata: nil)
            #expect(queue.drain().map(\.sequence) == [1, 2, 3, 4, 5], "at-least-once: delivered again, not lost")
            #expect(logs.problems.contains { $0.message.contains("acknowledgements above the cursor unreadable") })
            #expect(!fileExists(acknowledgedFile))
            store.close()
        }
    }

    @Test func rewindHandsOutUncommittedRecordsAgain() throws {
        try TemporaryDirectory.with { directory in
            let store = try makeStore(directory)
            defer { store.close() }
            let queue = try store.open(name: "q", metadata: nil)
            for index in 1...5 { try queue.append(record("r\(index)")) }
            #expect(queue.drain().count == 5)
            queue.commit(through: 2)
            queue.rewind()
            #expect(queue.pendingCount == 3)
            #expect(queue.drainTexts() == ["r3", "r4", "r5"])
        }
    }

    @Test func segmentsRollAndConsumedOnesAreDeleted() throws {
        try TemporaryDirectory.with { directory in
            let payload = String(repeating: "p", count: 40)
            var store = try makeStore(directory, segmentBytes: 256)
            var queue = try store.open(name: "q", metadata: nil)
            for index in 1...50 { try queue.append(record("\(index):\(payload)")) }
            let queueDirectory = directory.store + "/q"
            let before = segmentFiles(queueDirectory)
            // 12-byte header + 4 records of 8 + ~43 bytes fit in 256.
            #expect(before.count >= 10)
            #expect(before.first == segmentFileName(1))

            let drained = queue.drain()
            #expect(drained.map(\.sequence) == Array(1...50))
            queue.commit(through: 25)
            let after = segmentFiles(queueDirectory)
            #expect(after.count < before.count)
            // Every remaining segment still holds a record after 25; exactly the fully consumed ones are gone.
            let firsts = after.compactMap { UInt64($0.dropLast(4)) }
            #expect(firsts.first! <= 26)
            #expect(firsts.count == before.compactMap { UInt64($0.dropLast(4)) }.filter { $0 > 26 }.count + 1)
            store.close()

            store = try makeStore(directory, segmentBytes: 256)
            queue = try store.open(name: "q", metadata: nil)
            #expect(queue.unconsumedCount == 25)
            #expect(queue.drain().map(\.sequence) == Array(26...50))
            queue.commit(through: 50)
            #expect(segmentFiles(queueDirectory).count == 1, "the writer's segment stays")
            #expect(try queue.append(record("51")) == 51)
            store.close()
        }
    }

    @Test func fortyMebibyteRecordRoundTrips() throws {
        try TemporaryDirectory.with { directory in
            let size = 40 << 20
            // 64 KiB blocks that differ from each other, so a misplaced chunk would not compare equal.
            let block = (0..<(64 << 10)).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 7) }
            var big = ByteBuffer()
            big.reserveCapacity(size)
            for index in 0..<(size / block.count) {
                big.writeInteger(UInt32(index))
                big.writeBytes(block[4...])
            }
            var store = try makeStore(directory, segmentBytes: 1 << 20)
            var queue = try store.open(name: "big", metadata: nil)
            try queue.append(record("before"))
            #expect(try queue.append(big) == 2)
            try queue.append(record("after"))
            #expect(segmentFiles(directory.store + "/big").count == 3, "the large record gets a segment of its own")
            var items = queue.drain()
            #expect(items.count == 3)
            #expect(items.count == 3 && items[1].record == big)
            store.close()

            store = try makeStore(directory, segmentBytes: 1 << 20)
            queue = try store.open(name: "big", metadata: nil)
            items = queue.drain()
            #expect(items.map(\.sequence) == [1, 2, 3])
            #expect(items.count == 3 && text(items[0].record) == "before" && items[1].record == big
                && text(items[2].record) == "after")
            store.close()

            // The large record is the newest segment's last record: recovery scans and keeps it.
            store = try makeStore(directory, segmentBytes: 64 << 20)
            queue = try store.open(name: "big2", metadata: nil)
            try queue.append(big)
            store.close()
            store = try makeStore(directory, segmentBytes: 64 << 20)
            queue = try store.open(name: "big2", metadata: nil)
            #expect(queue.next()?.record == big)
            #expect(logs.problems.isEmpty)
            store.close()
        }
    }

    @Test func appendBatchStoresRecordsInOrder() throws {
        try TemporaryDirectory.with { directory in
            var store = try makeStore(directory, segmentBytes: 300)
            var queue = try store.open(name: "q", metadata: nil)
            let first = try queue.appendBatch((1...40).map { record("batch \($0)") })
            #expect(first == 1..<41)
            let large = ByteBuffer(repeating: 7, count: 300 << 10)
            let second = try queue.appendBatch([record("small"), large, record("tail")])
            #expect(second == 41..<44)
            #expect(try queue.appendBatch([]) == 44..<44)
            #expect(segmentFiles(directory.store + "/q").count > 3)
            store.close()

            store = try makeStore(directory, segmentBytes: 300)
            queue = try store.open(name: "q", metadata: nil)
            let items = queue.drain()
            #expect(items.map(\.sequence) == Array(1...43))
            #expect(items.prefix(40).map { text($0.record) } == (1...40).map { "batch \($0)" })
            #expect(items.count == 43 && items[41].record == large && text(items[42].record) == "tail")
            store.close()
        }
    }

    @Test func emptyRecordsAreRejected() throws {
        try TemporaryDirectory.with { directory in
            let store = try makeStore(directory)
            defer { store.close() }
            let queue = try store.open(name: "q", metadata: nil)
            #expect(throws: QueueStoreError.emptyRecord(queue: "q")) { try queue.append(ByteBuffer()) }
            #expect(throws: QueueStoreError.emptyRecord(queue: "q")) { try queue.appendBatch([record("a"), ByteBuffer()]) }
            #expect(queue.lastSequence == 0)
        }
    }

    @Test func queueNamesRoundTripThroughDirectoryNames() throws {
        try TemporaryDirectory.with { directory in
            let names = ["a/b", "with space", "ünïcødé ✓ 队列", "..", ".", ".hidden", "%41", "plain-Name_1.2",
                         "../escape", "tab\tnew\nline", "a%2Fb"]
            var store = try makeStore(directory)
            for (index, name) in names.enumerated() {
                let queue = try store.open(name: name, metadata: Array("meta \(index)".utf8))
                try queue.append(record(name))
            }
            #expect(store.queueNames() == names.sorted())
            store.close()

            // Every queue is one plain directory inside the store; nothing escaped it.
            let entries = listDirectory(directory.store).filter { $0 != ".lock" }
            #expect(entries.count == names.count)
            for entry in entries {
                #expect(entry != "." && entry != ".." && !entry.hasPrefix(".") && !entry.contains("/"))
                #expect(isDirectory(directory.store + "/" + entry))
            }
            #expect(listDirectory(directory.path) == ["store"])

            store = try makeStore(directory)
            #expect(store.queueNames() == names.sorted())
            for (index, name) in names.enumerated() {
                let queue = try store.open(name: name, metadata: nil)
                #expect(queue.metadata == Array("meta \(index)".utf8))
                #expect(queue.drainTexts() == [name])
            }
            #expect(QueueStore.directoryName(forQueue: "a/b") == "a%2Fb")
            #expect(QueueStore.directoryName(forQueue: "..") == "%2E.")
            #expect(throws: QueueStoreError.self) { try store.open(name: "", metadata: nil) }
            #expect(throws: QueueStoreError.self) { try store.open(name: String(repeating: "/", count: 100), metadata: nil) }
            store.close()
        }
    }

    @Test func removeDeletesTheQueueDirectory() throws {
        try TemporaryDirectory.with { directory in
            var store = try makeStore(directory, fsync: .interval(milliseconds: 5), segmentBytes: 128)
            let queue = try store.open(name: "gone/soon", metadata: [1, 2, 3])
            for index in 1...20 { try queue.append(record("r\(index)")) }
            _ = try store.open(name: "stays", metadata: nil)
            let path = directory.store + "/" + QueueStore.directoryName(forQueue: "gone/soon")
            #expect(isDirectory(path))

            try store.remove(name: "gone/soon")
            #expect(!fileExists(path))
            #expect(store.queueNames() == ["stays"])
            #expect(listDirectory(directory.store) == [".lock", "stays"])
            #expect(throws: QueueStoreError.queueClosed(name: "gone/soon")) { try queue.append(record("late")) }
            #expect(queue.next() == nil)
            #expect(throws: QueueStoreError.queueNotFound(name: "gone/soon")) { try store.remove(name: "gone/soon") }

            // A queue on disk that was never opened can be removed too, and a new one of the same name starts empty.
            store.close()
            store = try makeStore(directory)
            try store.remove(name: "stays")
            #expect(store.queueNames().isEmpty)
            let again = try store.open(name: "gone/soon", metadata: nil)
            #expect(again.lastSequence == 0)
            #expect(again.metadata.isEmpty)
            #expect(try again.append(record("fresh")) == 1)
            store.close()
        }
    }

    @Test func metadataPersistsAcrossReopen() throws {
        try TemporaryDirectory.with { directory in
            var store = try makeStore(directory)
            var queue = try store.open(name: "q", metadata: Array("mode=1;token=abc".utf8))
            #expect(queue.metadata == Array("mode=1;token=abc".utf8))
            store.close()

            store = try makeStore(directory)
            queue = try store.open(name: "q", metadata: nil)
            #expect(queue.metadata == Array("mode=1;token=abc".utf8))
            try queue.setMetadata(Array("mode=3".utf8))
            #expect(listDirectory(directory.store + "/q").contains("meta.tmp") == false)
            store.close()

            store = try makeStore(directory)
            queue = try store.open(name: "q", metadata: nil)
            #expect(queue.metadata == Array("mode=3".utf8))
            store.close()

            store = try makeStore(directory)
            queue = try store.open(name: "q", metadata: [0, 255, 10])  // non-nil replaces
            store.close()
            store = try makeStore(directory)
            queue = try store.open(name: "q", metadata: nil)
            #expect(queue.metadata == [0, 255, 10])
            #expect(try store.open(name: "q", metadata: nil) === queue, "an open queue is shared")
            store.close()
            #expect(throws: QueueStoreError.self) { try store.open(name: "q", metadata: nil) }
        }
    }

    @Test func aDirectoryIsOpenByOneStoreAtATime() throws {
        try TemporaryDirectory.with { directory in
            let store = try makeStore(directory)
            #expect(throws: QueueStoreError.directoryInUse(directory: directory.store)) { try makeStore(directory) }
            store.close()
            let again = try makeStore(directory)
            again.close()
        }
    }

    @Test func errorsNameTheFile() {
        TemporaryDirectory.with { directory in
            let blocker = directory.path + "/file"
            writeFile(blocker, [1])
            do throws(QueueStoreError) {
                _ = try QueueStore(directory: blocker + "/store", fsync: .none, logger: logs.logger())
                Issue.record("a store below a regular file cannot be created")
            } catch {
                #expect(error.description.contains(blocker))
            }
        }
    }
}

func mkdirOrFail(_ path: String) {
    precondition(mkdirPath(path) == 0, "mkdir \(path) failed")
}
