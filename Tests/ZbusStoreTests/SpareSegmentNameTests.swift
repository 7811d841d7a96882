import Dispatch
import Foundation
import Logging
import NIOCore
import NIOPosix
import Testing
@testable import ZbusStore
import ZbusTestSupport

/// A segment made ahead (`next.spare`) that is in use but cannot take its segment name keeps the spare's name: the
/// store must not make another spare under that name, which would truncate the writer's segment.
@Suite("QueueStore: a spare in use that cannot be renamed", .blockingIO(.light, reopensLockedFiles: true))
struct SpareSegmentNameTests {
    @Test("rolls on an event loop after a failed rename of the spare lose no record across a restart")
    func failedRenameLosesNothing() throws {
        try TemporaryDirectory.with { directory in
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            defer { try? group.syncShutdownGracefully() }
            let loop = group.next()
            let store = try QueueStore(directory: directory.store, fsync: .interval(milliseconds: 10), segmentBytes: 4096,
                                       logger: Logger(label: "test"))
            let queue = try store.open(name: "Q", metadata: nil)
            let queueDirectory = directory.store + "/" + QueueStore.directoryName(forQueue: "Q")
            // A directory where each later segment's file would go: renaming the spare onto it fails (EISDIR).
            let planted = (2...400).map { queueDirectory + "/" + SegmentFormat.fileName(firstSequence: UInt64($0)) }
            for path in planted { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false) }

            let padding = String(repeating: "x", count: 100)
            for batch in 0..<40 {
                let records = (0..<10).map { record("\(batch * 10 + $0) \(padding)") }
                _ = try loop.submit { try queue.appendBatch(records) }.wait()
                // What the roll left to the store's thread (the rename, the next spare) is done before the next batch.
                let done = DispatchSemaphore(value: 0)
                store.execute { done.signal() }
                done.wait()
            }
            #expect(listDirectory(queueDirectory).contains(DurableQueue.spareFileName),
                    "a roll into the spare happened and its rename failed: \(listDirectory(queueDirectory))")
            store.close()

            for path in planted { try FileManager.default.removeItem(atPath: path) }
            let reopened = try QueueStore(directory: directory.store, fsync: .interval(milliseconds: 10), logger: Logger(label: "test"))
            defer { reopened.close() }
            let again = try reopened.open(name: "Q", metadata: nil)
            var read: [UInt64] = []
            while let (sequence, _) = again.next() { read.append(sequence) }
            #expect(read == Array(1...400))
        }
    }
}

/// The sync thread deletes consumed segments through the queue's open directory: a queue removed (its directory renamed
/// away) and created again under the same name meanwhile keeps its own segments, whose names are the same.
@Suite("QueueStore: consumed segments are deleted in the queue's own directory", .blockingIO(.light))
struct SegmentDeletionDirectoryTests {
    @Test("a deletion after the directory was renamed away and made again at its path leaves the new one's file")
    func deletesInTheOpenDirectory() throws {
        try TemporaryDirectory.with { directory in
            let manager = FileManager.default
            let old = directory.path + "/Q", moved = directory.path + "/removing-Q"
            let name = SegmentFormat.fileName(firstSequence: 1)
            try manager.createDirectory(atPath: old, withIntermediateDirectories: true)
            #expect(manager.createFile(atPath: old + "/" + name, contents: Data("old".utf8)))
            let opened = try StoreFile.openDirectory(old)
            try manager.moveItem(atPath: old, toPath: moved)
            try manager.createDirectory(atPath: old, withIntermediateDirectories: false)
            #expect(manager.createFile(atPath: old + "/" + name, contents: Data("new".utf8)))

            try StoreFileSystem.unlink(name, in: opened)
            #expect(manager.fileExists(atPath: old + "/" + name), "the new queue's segment stays")
            #expect(!manager.fileExists(atPath: moved + "/" + name), "the old queue's segment is deleted")
            try StoreFileSystem.unlink(name, in: opened)  // already gone: fine
        }
    }
}
