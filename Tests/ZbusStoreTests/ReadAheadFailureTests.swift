import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing
import ZbusStore
import ZbusTestSupport

/// A segment the store's I/O thread cannot read (a failing disk, a full descriptor table) is tried again after pauses
/// that grow, not in a loop of attempts and error lines; once it reads again, every record arrives.
@Suite("QueueStore: a failing read ahead is retried with pauses", .blockingIO(.light, reopensLockedFiles: true))
struct ReadAheadFailureTests {
    @Test("an older segment that cannot be read is retried a few times a second at most, then read once it can be")
    func failingOpenAheadBacksOff() throws {
        try TemporaryDirectory.with { directory in
            let padding = String(repeating: "x", count: 100)
            let queueDirectory = directory.store + "/" + QueueStore.directoryName(forQueue: "Q")
            // About ten segments of 4 KiB, written and closed, so that a reopened reader starts on an older segment.
            do {
                let store = try QueueStore(directory: directory.store, fsync: .none, segmentBytes: 4096, logger: Logger(label: "test"))
                let queue = try store.open(name: "Q", metadata: nil)
                for batch in 0..<40 {
                    try queue.appendBatch((0..<10).map { record("\(batch * 10 + $0) \(padding)") })
                }
                store.close()
            }
            let oldest = try #require(segmentFiles(queueDirectory).sorted().first)
            let oldestPath = queueDirectory + "/" + oldest
            let saved = oldestPath + ".saved"
            // A link to a directory where the segment was: it opens, but every read of it fails (EISDIR), as a failing
            // disk's would. A link, so that the segment can come back in one rename, never missing meanwhile (a
            // missing segment is skipped, its records lost, as it should be).
            let broken = directory.path + "/not-a-segment"
            #expect(mkdir(broken, 0o755) == 0)
            #expect(rename(oldestPath, saved) == 0)
            #expect(symlink(broken, oldestPath) == 0)

            let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            defer { try? group.syncShutdownGracefully() }
            let loop = group.next()
            let store = try QueueStore(directory: directory.store, fsync: .none, segmentBytes: 4096, logger: Logger(label: "test"))
            defer { store.close() }
            let queue = try store.open(name: "Q", metadata: nil)

            let wakeUps = NIOLockedValueBox(0)
            let read = NIOLockedValueBox<[UInt64]>([])
            @Sendable func drain() {
                while let (sequence, _) = queue.next() { read.withLockedValue { $0.append(sequence) } }
            }
            queue.setReadableHandler {
                wakeUps.withLockedValue { $0 += 1 }
                loop.execute(drain)
            }
            try loop.submit(drain).wait()  // on the loop, as the broker reads: the open goes to the I/O thread

            // A second and a half of failures: with no pause between attempts this is thousands of wake-ups.
            Thread.sleep(forTimeInterval: 1.5)  // the window the attempts are counted in, not a wait for an event
            let failing = wakeUps.withLockedValue { $0 }
            #expect(failing >= 2, "the failing open is tried again (\(failing) wake-ups)")
            #expect(failing <= 20, "\(failing) attempts in 1.5 s: retried without pausing")
            #expect(read.withLockedValue { $0 }.isEmpty)

            // The segment reads again: the next attempt (at most 5 s away) gets every record, in order.
            #expect(symlink(saved, oldestPath + ".link") == 0)
            #expect(rename(oldestPath + ".link", oldestPath) == 0)
            let deadline = monotonicSeconds() + 15
            while read.withLockedValue({ $0.count }) < 400 && monotonicSeconds() < deadline { usleep(10_000) }
            #expect(read.withLockedValue { $0 } == Array(1...400))
        }
    }
}
