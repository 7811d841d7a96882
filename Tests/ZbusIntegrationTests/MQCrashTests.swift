import Foundation
import Testing
import ZbusKernel
import ZbusTestSupport

/// Drains an MQ with server-side timeouts; returns the bodies in delivery order.
func drain(_ node: ZbusProcess, mq: String) throws -> [String] {
    let consumer = try node.connect()
    var bodies: [String] = []
    while true {
        consumer.request([("cmd", "consume"), ("mq", mq), ("timeout", "300")])
        let reply = try consumer.receive()
        if reply.status == 204 { return bodies }
        #expect(reply.status == 200)
        bodies.append(reply.bodyString)
    }
}

@Suite("MQ crash safety", .serialized, .blockingIO(.heavy))
struct MQCrashTests {
    @Test("SIGKILL at a random moment under load: every acknowledged message is consumed once, in order", arguments: ["interval", "always", "none"])
    func killUnderLoad(fsync: String) throws {
        let directory = ZbusProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let extra = "    fsync: \(fsync)\n"
        var node = try startMQNode(directory: directory, extra: extra)
        let admin = try node.connect()
        admin.request([("cmd", "create_mq"), ("mq_name", "Crash"), ("mq_mode", "1")])
        _ = try admin.receive()

        // Producers on two connections, each with a few messages in flight, recording what was acknowledged.
        let acknowledgedBox = LockedValue<[Int: [Int]]>([0: [], 1: []])
        // The random moment is counted in acknowledgements, not seconds: on a loaded machine a fixed time could pass
        // before the first one.
        let killAfter = Int.random(in: 20...300)
        let reachedKillPoint = DispatchSemaphore(value: 0)
        let port = node.port
        let group = DispatchGroup()
        for producer in 0..<2 {
            group.enter()
            Thread.detachNewThread {
                defer {
                    reachedKillPoint.signal()  // A producer the node failed ends the wait too.
                    group.leave()
                }
                guard let client = try? WireClient(port: port) else { return }
                var next = 0
                var inFlight: [Int] = []
                while true {
                    while inFlight.count < 8 {
                        let body = "\(producer)-\(next)"
                        if !client.request([("cmd", "produce"), ("mq", "Crash"), ("id", body)], body: body) { return }
                        inFlight.append(next)
                        next += 1
                    }
                    guard let reply = try? client.receive(timeout: 3), reply.status == 200 else { return }
                    let done = inFlight.removeFirst()
                    let total = acknowledgedBox.withLock { acknowledged in
                        acknowledged[producer]!.append(done)
                        return acknowledged.values.reduce(0) { $0 + $1.count }
                    }
                    if total == killAfter { reachedKillPoint.signal() }
                }
            }
        }
        _ = reachedKillPoint.wait(timeout: .now() + 120)
        node.crash()
        group.wait()
        let acknowledged = acknowledgedBox.withLock { $0 }

        node = try startMQNode(directory: directory, extra: extra)
        defer { node.cleanUp() }
        let bodies = try drain(node, mq: "Crash")
        #expect(Set(bodies).count == bodies.count, "no message delivered twice")
        for producer in 0..<2 {
            let delivered = bodies.filter { $0.hasPrefix("\(producer)-") }.map { Int($0.split(separator: "-")[1])! }
            #expect(delivered == Array(0..<delivered.count), "producer \(producer): in order, no gap, no garbage")
            let confirmed = acknowledged[producer]!
            #expect(delivered.count >= confirmed.count, "producer \(producer): \(confirmed.count) acked, \(delivered.count) recovered")
        }
        #expect(acknowledged.values.reduce(0) { $0 + $1.count } > 0, "the load ran before the kill")
    }

    @Test("fsync: always: a torn write at any byte of the last records is cut on restart, never delivered")
    func tornWrite() throws {
        let directory = ZbusProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let extra = "    fsync: always\n"
        var node = try startMQNode(directory: directory, extra: extra)
        let client = try node.connect()
        client.request([("cmd", "create_mq"), ("mq_name", "Torn"), ("mq_mode", "1")])
        _ = try client.receive()
        let count = 20
        for index in 0..<count {
            client.request([("cmd", "produce"), ("mq", "Torn"), ("id", "t\(index)")], body: "message-\(index)")
            expectReply(try client.receive(), status: 200)
        }
        node.crash()
        let queueDirectory = directory.appendingPathComponent("store/mq/Torn")
        let segment = try #require(try FileManager.default.contentsOfDirectory(atPath: queueDirectory.path).filter { $0.hasSuffix(".seg") }.sorted().last)
        let segmentURL = queueDirectory.appendingPathComponent(segment)
        let original = try Data(contentsOf: segmentURL)
        // Record ends, from the segment format: a 12-byte header, then records of [u32 length][u32 crc][payload],
        // then (the node was killed) the zeros reserved ahead of the writer.
        var recordEnds: [Int] = []
        var offset = 12
        while offset + 8 <= original.count {
            let length = original[offset..<offset + 4].reduce(0) { $0 << 8 | Int($1) }
            if length == 0 { break }
            offset += 8 + length
            if offset <= original.count { recordEnds.append(offset) }
        }
        #expect(recordEnds.count == count)
        let dataEnd = try #require(recordEnds.last)
        #expect(original[dataEnd...].allSatisfy { $0 == 0 }, "only reserved zeros after the last record")
        // Cut points: every byte of the last two records (each record is well under 400 bytes), and a few earlier.
        let tail = max(0, dataEnd - 700)
        var cuts = Array(stride(from: dataEnd - 1, through: tail, by: -1))
        cuts += (0..<8).map { _ in Int.random(in: 16..<max(17, tail)) }
        // Restarting the node for every cut is slow in debug builds; sample the tail densely instead of exhaustively
        // (the store's own tests cut at every byte).
        let sampled = cuts.enumerated().filter { $0.offset % 9 == 0 || $0.offset < 4 }.map(\.element)
        var lastCount = -1
        for (round, cut) in sampled.enumerated() {
            // A torn write as a file system leaves it: the file ends at the cut, or (space reserved ahead) the
            // bytes from the cut on are zeros.
            if round % 2 == 0 {
                try original.prefix(cut).write(to: segmentURL)
            } else {
                try (original.prefix(cut) + Data(count: original.count - cut)).write(to: segmentURL)
            }
            node = try startMQNode(directory: directory, extra: extra)
            let bodies = try drain(node, mq: "Torn")
            node.crash()
            try original.write(to: segmentURL)
            // Reset the read cursor left by the drain so that the next round starts from the same state.
            try? FileManager.default.removeItem(at: queueDirectory.appendingPathComponent("cursor"))
            let complete = recordEnds.filter { $0 <= cut }.count
            #expect(bodies == (0..<complete).map { "message-\($0)" }, "cut at \(cut): exactly the \(complete) complete records")
            lastCount = bodies.count
        }
        #expect(lastCount >= 0)
    }
}
