import Dispatch
import Logging
import NIOConcurrencyHelpers
import NIOCore
import Testing
import ZbusStore
import ZbusTestSupport

@Suite("QueueStore: fsync policies and group commit", .blockingIO(.heavy, reopensLockedFiles: true))
struct QueueStoreSyncTests {
    /// Counts durability callbacks per sequence.
    final class Acknowledgements: Sendable {
        private let state = NIOLockedValueBox<(counts: [UInt64: Int], failures: Int)>(([:], 0))
        private let semaphore = DispatchSemaphore(value: 0)

        func callback(for sequence: @escaping @Sendable () -> UInt64) -> @Sendable (Result<Void, QueueStoreError>) -> Void {
            { result in
                self.state.withLockedValue { state in
                    if case .failure = result { state.failures += 1 }
                    state.counts[sequence(), default: 0] += 1
                }
                self.semaphore.signal()
            }
        }

        func record(_ result: Result<Void, QueueStoreError>, key: UInt64) {
            state.withLockedValue { state in
                if case .failure = result { state.failures += 1 }
                state.counts[key, default: 0] += 1
            }
            semaphore.signal()
        }

        /// Waits for `count` callbacks; the generous limit only keeps a broken build from hanging.
        func wait(for count: Int) -> Bool {
            for _ in 0..<count where semaphore.wait(timeout: .now() + .seconds(120)) == .timedOut { return false }
            return true
        }

        var counts: [UInt64: Int] { state.withLockedValue { $0.counts } }
        var failures: Int { state.withLockedValue { $0.failures } }
    }

    @Test func alwaysAcknowledgesEveryConcurrentAppendExactlyOnce() throws {
        try TemporaryDirectory.with { directory in
            let threads = 8
            let perThread = 500
            var store = try QueueStore(directory: directory.store, fsync: .always, segmentBytes: 64 << 10,
                                       logger: CapturedLogs().logger())
            let queue = try store.open(name: "q", metadata: nil)
            let acknowledgements = Acknowledgements()
            let group = DispatchGroup()
            let errors = NIOLockedValueBox<[String]>([])
            for thread in 0..<threads {
                DispatchQueue.global().async(group: group) {
                    for index in 0..<perThread {
                        // Keyed by (thread, index): the sequence is not known before the append returns.
                        let key = UInt64(thread * perThread + index)
                        do {
                            try queue.append(record("\(thread):\(index)")) { result in
                                acknowledgements.record(result, key: key)
                            }
                        } catch {
                            errors.withLockedValue { $0.append("\(error)") }
                        }
                    }
                }
            }
            group.wait()
            #expect(errors.withLockedValue { $0 }.isEmpty)
            #expect(acknowledgements.wait(for: threads * perThread))
            let counts = acknowledgements.counts
            #expect(counts.count == threads * perThread)
            #expect(counts.values.allSatisfy { $0 == 1 })
            #expect(acknowledgements.failures == 0)
            #expect(queue.lastSequence == UInt64(threads * perThread))
            store.close()
            #expect(acknowledgements.counts.values.allSatisfy { $0 == 1 }, "no callback runs twice, not even at close")

            store = try QueueStore(directory: directory.store, fsync: .always, segmentBytes: 64 << 10,
                                   logger: CapturedLogs().logger())
            let reopened = try store.open(name: "q", metadata: nil)
            var lastIndex = [Int](repeating: -1, count: threads)
            var total = 0
            var expectedSequence: UInt64 = 1
            while let (sequence, buffer) = reopened.next() {
                #expect(sequence == expectedSequence)
                expectedSequence += 1
                let parts = text(buffer).split(separator: ":").compactMap { Int($0) }
                guard parts.count == 2 else {
                    Issue.record("garbage record \(text(buffer))")
                    break
                }
                #expect(parts[1] == lastIndex[parts[0]] + 1, "per-thread order")
                lastIndex[parts[0]] = parts[1]
                total += 1
            }
            #expect(total == threads * perThread)
            #expect(lastIndex.allSatisfy { $0 == perThread - 1 })
            store.close()
        }
    }

    @Test func alwaysAcknowledgesBatchesOnceAndCloseRunsPendingCallbacks() throws {
        try TemporaryDirectory.with { directory in
            let store = try QueueStore(directory: directory.store, fsync: .always, segmentBytes: 256,
                                       logger: CapturedLogs().logger())
            let queue = try store.open(name: "q", metadata: nil)
            let acknowledgements = Acknowledgements()
            for batch in 0..<20 {
                // Each batch spans segments (256-byte segments).
                try queue.appendBatch((0..<10).map { record("batch \(batch) record \($0) padding padding") }) { result in
                    acknowledgements.record(result, key: UInt64(batch))
                }
            }
            for index in 0..<50 {
                try queue.append(record("single \(index)")) { result in acknowledgements.record(result, key: UInt64(1_000 + index)) }
            }
            queue.commit(through: 100)
            store.close()  // returns only after every outstanding callback ran
            let counts = acknowledgements.counts
            #expect(counts.count == 70)
            #expect(counts.values.allSatisfy { $0 == 1 })
            #expect(acknowledgements.failures == 0)
        }
    }

    @Test(arguments: [FsyncPolicy.none, .interval(milliseconds: 2)])
    func nonSyncingPoliciesAcknowledgeBeforeAppendReturns(policy: FsyncPolicy) throws {
        try TemporaryDirectory.with { directory in
            var store = try QueueStore(directory: directory.store, fsync: policy, segmentBytes: 512,
                                       logger: CapturedLogs().logger())
            var queue = try store.open(name: "q", metadata: nil)
            let acknowledgements = Acknowledgements()
            for index in 0..<100 {
                let sequence = try queue.append(record("r\(index)")) { result in
                    acknowledgements.record(result, key: UInt64(index))
                }
                #expect(acknowledgements.counts[UInt64(index)] == 1, "called synchronously, before append returned")
                #expect(sequence == UInt64(index + 1))
            }
            try queue.appendBatch([record("b1"), record("b2")]) { result in acknowledgements.record(result, key: 999) }
            #expect(acknowledgements.counts[999] == 1)
            for _ in 0..<50 { _ = queue.next() }
            queue.commit(through: 50)
            store.close()

            store = try QueueStore(directory: directory.store, fsync: policy, logger: CapturedLogs().logger())
            queue = try store.open(name: "q", metadata: nil)
            #expect(queue.drainTexts() == (50..<100).map { "r\($0)" } + ["b1", "b2"])
            store.close()
        }
    }

    @Test func intervalPolicyKeepsWorkingWhileAppendsRace() throws {
        try TemporaryDirectory.with { directory in
            let store = try QueueStore(directory: directory.store, fsync: .interval(milliseconds: 1), segmentBytes: 4096,
                                       logger: CapturedLogs().logger())
            let queue = try store.open(name: "q", metadata: nil)
            let group = DispatchGroup()
            for thread in 0..<4 {
                DispatchQueue.global().async(group: group) {
                    for index in 0..<500 { _ = try? queue.append(record("\(thread):\(index)")) }
                }
            }
            // A reader drains concurrently with the writers.
            var seen = 0
            var previous: UInt64 = 0
            while seen < 2_000 {
                if let (sequence, _) = queue.next() {
                    #expect(sequence == previous + 1)
                    previous = sequence
                    seen += 1
                    if seen % 100 == 0 { queue.commit(through: sequence) }
                }
            }
            group.wait()
            #expect(queue.lastSequence == 2_000)
            store.close()
        }
    }
}
