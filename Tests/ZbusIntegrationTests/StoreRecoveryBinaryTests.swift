import Foundation
import Testing
import ZbusKernel
import ZbusTestSupport

@Suite("Store recovery through the binary", .serialized, .blockingIO(.heavy))
struct StoreRecoveryBinaryTests {
    /// The one directory under `root` holding segment files (`*.seg`) of the MQ `name`'s queue.
    static func queueDirectory(named name: String, under root: URL) throws -> URL {
        let enumerator = FileManager.default.enumerator(at: root, includingPropertiesForKeys: nil)
        while let url = enumerator?.nextObject() as? URL {
            if url.lastPathComponent == name,
               let files = try? FileManager.default.contentsOfDirectory(atPath: url.path), files.contains(where: { $0.hasSuffix(".seg") })
            {
                return url
            }
        }
        throw WireClientError.timedOut("a segment directory for \(name) under \(root.path)")
    }

    @Test("an empty stray segment file dropped into an MQ folder hides none of its messages after a restart")
    func strayEmptySegment() throws {
        let directory = ZbusProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        var node = try startMQNode(directory: directory)
        var client = try node.connect()
        client.request([("cmd", "create_mq"), ("mq_name", "Stray"), ("mq_mode", "1")])
        #expect(try client.receive().status == 200)
        let bodies = (1...5).map { "message-\($0)" }
        for body in bodies {
            client.request([("cmd", "produce"), ("mq", "Stray")], body: body)
            #expect(try client.receive().status == 200)
        }
        #expect(node.stop() == 0)

        // An empty file named like a later segment (sequence 3, inside the stored records).
        let queue = try Self.queueDirectory(named: "Stray", under: directory.appendingPathComponent("store"))
        let stray = queue.appendingPathComponent("00000000000000000003.seg")
        #expect(FileManager.default.createFile(atPath: stray.path, contents: Data()))

        node = try startMQNode(directory: directory)
        defer { node.cleanUp() }
        client = try node.connect()
        var received: [String] = []
        for _ in bodies {
            client.request([("cmd", "consume"), ("mq", "Stray")])
            // A hidden record leaves the consume parked: the receive then times out and the test fails.
            guard let reply = try client.receiveIfAny(timeout: 5) else { break }
            received.append(reply.bodyString)
        }
        #expect(received == bodies)
        #expect(node.stderr.contains("holds no record"), "the removal is logged")
        // New messages continue after the old ones.
        client.request([("cmd", "produce"), ("mq", "Stray")], body: "after")
        #expect(try client.receive().status == 200)
        client.request([("cmd", "consume"), ("mq", "Stray")])
        #expect(try client.receive().bodyString == "after")
    }
}
