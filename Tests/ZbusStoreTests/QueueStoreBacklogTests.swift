import Dispatch
import NIOConcurrencyHelpers
import NIOCore
import Testing
import ZbusStore
import ZbusTestSupport

#if canImport(Glibc)
import Glibc
#endif

@Suite("QueueStore: backlogs bounded by disk", .blockingIO(.heavy, reopensLockedFiles: true))
struct QueueStoreBacklogTests {
    static func payload(_ index: Int) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt64(index))
        buffer.writeRepeatingByte(UInt8(truncatingIfNeeded: index), count: 92)
        return buffer
    }

    @Test func twoHundredThousandRecordsSurviveAReopen() throws {
        try TemporaryDirectory.with { directory in
            let count = 200_000
            var store = try QueueStore(directory: directory.store, fsync: .none, segmentBytes: 4 << 20,
                                       logger: CapturedLogs().logger())
            var queue = try store.open(name: "backlog", metadata: nil)
            for index in 1...count { try queue.append(Self.payload(index)) }
            store.close()

            store = try QueueStore(directory: directory.store, fsync: .none, segmentBytes: 4 << 20,
                                   logger: CapturedLogs().logger())
            queue = try store.open(name: "backlog", metadata: nil)
            #expect(queue.unconsumedCount == UInt64(count))
            var expected = 1
            var mismatches = 0
            while let (sequence, buffer) = queue.next() {
                if sequence != UInt64(expected) || buffer.getInteger(at: buffer.readerIndex, as: UInt64.self) != UInt64(expected)
                    || buffer.readableBytes != 100 {
                    mismatches += 1
                }
                if expected % 10_000 == 0 { queue.commit(through: sequence) }
                expected += 1
            }
            #expect(mismatches == 0)
            #expect(expected - 1 == count)
            queue.commit(through: UInt64(count))
            #expect(queue.unconsumedCount == 0)
            #expect(segmentFiles(directory.store + "/backlog").count == 1)
            store.close()
        }
    }

    /// The soak run of the brief: 2,000,000 records of ~200 bytes, memory and restart time reported.
    /// Opt-in (`ZBUS_STORE_SOAK=1`), meant for release builds: `swift test -c release --filter Soak`.
    @Test(.enabled(if: getenv("ZBUS_STORE_SOAK") != nil))
    func soakTwoMillionRecords() throws {
        try TemporaryDirectory.with { directory in
            let count = 2_000_000
            var record = ByteBuffer(repeating: 0x61, count: 200)
            let baseline = residentBytes() ?? 0
            var store = try QueueStore(directory: directory.store, fsync: .none, logger: CapturedLogs().logger())
            var queue = try store.open(name: "soak", metadata: nil)
            var start = monotonicSeconds()
            for index in 1...count {
                record.setInteger(UInt64(index), at: 0)
                try queue.append(record)
            }
            let appendSeconds = monotonicSeconds() - start
            let afterAppend = residentBytes() ?? 0
            store.close()

            start = monotonicSeconds()
            store = try QueueStore(directory: directory.store, fsync: .none, logger: CapturedLogs().logger())
            queue = try store.open(name: "soak", metadata: nil)
            let reopenSeconds = monotonicSeconds() - start
            #expect(queue.unconsumedCount == UInt64(count))

            start = monotonicSeconds()
            var expected: UInt64 = 1
            var peak = 0
            while let (sequence, buffer) = queue.next() {
                #expect(sequence == expected && buffer.getInteger(at: buffer.readerIndex, as: UInt64.self) == expected)
                if expected % 100_000 == 0 {
                    peak = max(peak, residentBytes() ?? 0)
                    queue.commit(through: sequence)
                }
                expected += 1
            }
            let readSeconds = monotonicSeconds() - start
            #expect(expected == UInt64(count) + 1)
            store.close()
            let growth = max(afterAppend, peak) - baseline
            print("""
                soak: \(count) x 200 B: append \(Int(Double(count) / appendSeconds)) records/s, \
                reopen \(Int(reopenSeconds * 1000)) ms, read \(Int(Double(count) / readSeconds)) records/s, \
                RSS baseline \(baseline >> 20) MiB, after append \(afterAppend >> 20) MiB, peak while reading \(peak >> 20) MiB
                """)
            #expect(growth < 100 << 20)
        }
    }

    /// Group commit throughput: 8 threads appending under `.always`, each waiting for nothing; reported, opt-in.
    @Test(.enabled(if: getenv("ZBUS_STORE_SOAK") != nil))
    func soakGroupCommit() throws {
        try TemporaryDirectory.with { directory in
            let threads = 8
            let perThread = 5_000
            let store = try QueueStore(directory: directory.store, fsync: .always, logger: CapturedLogs().logger())
            let queue = try store.open(name: "sync", metadata: nil)
            let acknowledged = NIOLockedValueBox(0)
            let done = DispatchSemaphore(value: 0)
            let start = monotonicSeconds()
            for _ in 0..<threads {
                DispatchQueue.global().async {
                    let record = ByteBuffer(repeating: 0x62, count: 200)
                    for _ in 0..<perThread {
                        _ = try? queue.append(record) { _ in
                            let all = acknowledged.withLockedValue { count -> Bool in
                                count += 1
                                return count == threads * perThread
                            }
                            if all { done.signal() }
                        }
                    }
                }
            }
            done.wait()
            let seconds = monotonicSeconds() - start
            store.close()
            print("soak: group commit, \(threads) threads x \(perThread) appends of 200 B under .always: "
                + "\(Int(Double(threads * perThread) / seconds)) durable appends/s")
            #expect(acknowledged.withLockedValue { $0 } == threads * perThread)
        }
    }
}
