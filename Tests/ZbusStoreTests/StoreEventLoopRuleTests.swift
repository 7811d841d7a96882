import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing
import ZbusStore
import ZbusTestSupport

/// The store's rule that nothing on an event loop waits for the disk (`BlockingIOCheck`), checked in debug builds:
/// what the broker does on its loops (append across segment rolls, read, commit) makes no call that may wait, and the
/// check does catch one that does.
@Suite("QueueStore: nothing on an event loop waits for the disk", .blockingIO(.light, reopensLockedFiles: true))
struct StoreEventLoopRuleTests {
    @Test("on an event loop, appends across segment rolls, reads and commits make no call that may wait; opening a queue there is caught")
    func appendsReadsAndCommitsOnALoop() throws {
        guard BlockingIOCheck.isEnabled else { return }  // release builds do not check
        try TemporaryDirectory.with { directory in
            let violations = NIOLockedValueBox<[String]>([])
            // Only this test's files: other suites run in the same process.
            BlockingIOCheck.setViolationHandler { text in
                if text.contains(directory.path) { violations.withLockedValue { $0.append(text) } }
            }
            defer { BlockingIOCheck.setViolationHandler(nil) }
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            defer { try? group.syncShutdownGracefully() }
            let loop = group.next()

            let store = try QueueStore(directory: directory.store, fsync: .interval(milliseconds: 10), segmentBytes: 4096,
                                       logger: Logger(label: "test"))
            let queue = try store.open(name: "Q", metadata: nil)  // off the loops, as the broker does
            let queueDirectory = directory.store + "/" + QueueStore.directoryName(forQueue: "Q")
            let padding = String(repeating: "x", count: 100)
            // 400 records of about 100 bytes in batches of 10: about ten segments of 4 KiB, all rolled on the loop.
            for batch in 0..<40 {
                let records = (0..<10).map { record("\(batch * 10 + $0) \(padding)") }
                _ = try loop.submit { try queue.appendBatch(records) }.wait()
            }
            // At least one roll into a segment made ahead (until one is ready, the current segment grows past its size,
            // so how many there are depends on how fast the store's thread was: on a loaded machine it may not have
            // made one before the 400th record, so more batches follow, each a chance to roll, until one did).
            // A segment made ahead takes its name on the store's thread after the roll: a bounded wait for that.
            var total = 400
            let renamed = monotonicSeconds() + 10
            while segmentFiles(queueDirectory).count < 2 && monotonicSeconds() < renamed {
                let records = (0..<10).map { record("\(total + $0) \(padding)") }
                _ = try loop.submit { try queue.appendBatch(records) }.wait()
                total += 10
                usleep(2_000)
            }
            #expect(segmentFiles(queueDirectory).count > 1, "segments rolled: \(listDirectory(queueDirectory))")
            // Older segments are opened off the loop: `next()` says "nothing yet" until the store's thread has done
            // it (the broker waits for the readable handler; here, a bounded retry).
            var read: [UInt64] = []
            let readDeadline = monotonicSeconds() + 10
            while read.count < total && monotonicSeconds() < readDeadline {
                let more = try loop.submit { () -> [UInt64] in
                    var sequences: [UInt64] = []
                    while let (sequence, _) = queue.next() { sequences.append(sequence) }
                    return sequences
                }.wait()
                if more.isEmpty { usleep(1_000) }
                read += more
            }
            #expect(read == Array(1...UInt64(total)))
            let last = UInt64(total)
            try loop.submit { queue.commit(through: last) }.wait()
            // The sync thread writes the cursor and deletes the consumed segments (bounded wait on that event).
            let deadline = monotonicSeconds() + 10
            while segmentFiles(queueDirectory).count > 1 && monotonicSeconds() < deadline { usleep(10_000) }
            #expect(segmentFiles(queueDirectory).count == 1, "consumed segments deleted off the loop: \(listDirectory(queueDirectory))")
            #expect(violations.withLockedValue { $0 }.isEmpty, "\(violations.withLockedValue { $0 })")

            // The check is live: opening a queue on the loop is caught.
            _ = try loop.submit { try store.open(name: "Other", metadata: nil) }.wait()
            #expect(violations.withLockedValue { $0 }.contains { $0.contains("open") }, "opening on a loop is reported")
            store.close()

            let reopened = try QueueStore(directory: directory.store, fsync: .interval(milliseconds: 10), logger: Logger(label: "test"))
            defer { reopened.close() }
            #expect(try reopened.open(name: "Q", metadata: nil).committedSequence == UInt64(total), "the cursor written off the loop survives")
        }
    }
}
