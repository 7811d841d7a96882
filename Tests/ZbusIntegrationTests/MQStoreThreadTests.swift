import Foundation
import Testing
import ZbusKernel
import ZbusTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// The store's I/O off the event loops, through the real binary. The test binary is a debug build, in which any call
/// of the store that may wait for the disk on an event loop stops the node (`BlockingIOCheck`): a node that survives
/// these loads and stops cleanly made none.
@Suite("MQ store I/O off the event loops", .serialized, .blockingIO(.heavy))
struct MQStoreThreadTests {
    private static func nodeFile(_ directory: URL) throws -> String {
        let path = directory.appendingPathComponent("node-\(UUID().uuidString).yaml")
        // Small segments, so that a few thousand messages roll several on the event loops, yet larger than the
        // kernel's read-ahead, so that opening one does not bring all of it into memory.
        let text = "node:\n  log_level: debug\nmodules:\n  - module: mq\n    fsync: interval\n    segment_size: 1MiB\n"
        try text.write(to: path, atomically: false, encoding: .utf8)
        return path.path
    }

    /// Drops the page cache's copy of every file under `directory` (synced first, so that the pages are clean and
    /// can go): the node's next reads of them must come from the disk.
    private static func evictFromPageCache(_ directory: URL) -> Int {
        var evicted = 0
        let enumerator = FileManager.default.enumerator(at: directory, includingPropertiesForKeys: nil)
        while let url = enumerator?.nextObject() as? URL {
            guard url.pathExtension == "seg" else { continue }
            let descriptor = open(url.path, O_RDONLY)
            guard descriptor >= 0 else { continue }
            fsync(descriptor)
            if posix_fadvise(descriptor, 0, 0, Int32(POSIX_FADV_DONTNEED)) == 0 { evicted += 1 }
            close(descriptor)
        }
        return evicted
    }

    @Test("segment rolls, older segments and records no longer in memory are served, in order, with no disk wait on an event loop")
    func rollsAndColdReadsStayOffTheLoops() throws {
        let directory = ZbusProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = try Self.nodeFile(directory)
        var node = try ZbusProcess(arguments: ["--config", config], directory: directory)
        let client = try node.connect()
        client.request([("cmd", "create_mq"), ("mq_name", "Cold"), ("mq_mode", "1")])
        #expect(try client.receive().status == 200)

        // 5,000 messages of 1 KiB: 5 segments of 1 MiB, each rolled on an event loop.
        let count = 5_000
        let padding = String(repeating: "x", count: 1_000)
        var sent = 0
        while sent < count {
            let window = min(32, count - sent)
            for index in sent..<(sent + window) {
                client.request([("cmd", "produce"), ("mq", "Cold"), ("id", "\(index)")], body: "\(index) \(padding)")
            }
            for _ in 0..<window { #expect(try client.receive().status == 200) }
            sent += window
        }
        // Half of them consumed now: the cursor moves on the loops and consumed segments are deleted off them.
        let consumer = try node.connect()
        var bodies: [Int] = []
        for _ in 0..<(count / 2) {
            consumer.request([("cmd", "consume"), ("mq", "Cold"), ("timeout", "5000")])
            let reply = try consumer.receive()
            #expect(reply.status == 200)
            bodies.append(Int(reply.bodyString.split(separator: " ").first ?? "") ?? -1)
        }
        #expect(node.waitForLog("started segment"), "segments rolled")
        #expect(node.stop(signal: SIGINT) == 0, "no blocking call on an event loop (a debug node stops on one): \(node.stderr.suffix(2_000))")

        // Restarted with the files out of memory: the reader opens older segments and reads ahead off the loops.
        let evicted = Self.evictFromPageCache(directory)
        #expect(evicted >= 3, "segment files evicted: \(evicted)")
        node = try ZbusProcess(arguments: ["--config", config], directory: directory)
        defer { node.cleanUp() }
        let again = try node.connect()
        while bodies.count < count + 1 {
            // Out of memory again and again while it runs: the reads on the event loops find bytes not cached.
            if bodies.count % 100 == 0 { _ = Self.evictFromPageCache(directory) }
            again.request([("cmd", "consume"), ("mq", "Cold"), ("timeout", "5000")])
            let reply = try again.receive()
            guard reply.status == 200 else {
                Issue.record("consume answered \(reply.status) after \(bodies.count) of \(count)")
                break
            }
            bodies.append(Int(reply.bodyString.split(separator: " ").first ?? "") ?? -1)
        }
        // The last message consumed before the stop was never acknowledged (the next consume would have): it comes
        // again first.
        let half = count / 2
        #expect(bodies[half] == half - 1, "the unacknowledged message is delivered again")
        bodies.remove(at: half)
        #expect(bodies == Array(0..<count), "every message, in order")
        #expect(node.waitForLog("opening an older segment on the store's I/O thread"), "older segments were opened off the loops")
        #expect(node.waitForLog("records not in memory; reading ahead on the store's I/O thread"), "uncached records were read ahead off the loops")
        again.request([("cmd", "consume"), ("mq", "Cold"), ("timeout", "0")])
        #expect(try again.receive().status == 204, "nothing left")
        #expect(node.stop(signal: SIGINT) == 0, "no blocking call on an event loop: \(node.stderr.suffix(2_000))")
    }

    @Test("create_mq and remove_mq run on the store's thread, in the order they came, and answer each request")
    func createAndRemoveInOrder() throws {
        let directory = ZbusProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let node = try ZbusProcess(arguments: ["--config", try Self.nodeFile(directory)], directory: directory)
        defer { node.cleanUp() }
        let client = try node.connect()
        // Pipelined: create, remove, create again, remove a missing one; the answers come in order.
        let script: [(command: String, name: String, status: Int)] = [
            ("create_mq", "A", 200), ("create_mq", "B", 200), ("remove_mq", "A", 200), ("create_mq", "A", 200),
            ("remove_mq", "Missing", 404), ("remove_mq", "B", 200),
        ]
        for (index, step) in script.enumerated() {
            client.request([("cmd", step.command), ("mq_name", step.name), ("mq_mode", "1"), ("id", "\(index)")])
        }
        for (index, step) in script.enumerated() {
            let reply = try client.receive()
            #expect(reply.headers["id"] == "\(index)" && reply.status == step.status, "\(step): \(reply.status) \(reply.bodyString)")
        }
        client.request([("cmd", "query_mq"), ("mq", "A")])
        #expect(try client.receive().status == 200, "A exists after its second create")
        client.request([("cmd", "query_mq"), ("mq", "B")])
        #expect(try client.receive().status == 404, "B is gone")
        #expect(node.stop(signal: SIGINT) == 0, "no blocking call on an event loop: \(node.stderr.suffix(2_000))")
    }
}
