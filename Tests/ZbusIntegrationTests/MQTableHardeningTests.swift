import Foundation
import Testing
@testable import ZbusMQ
import ZbusKernel
import ZbusStore
import ZbusTestSupport

/// The real binary with the `mq` module on `directory`'s store, run under a descriptor limit.
private func startNode(directory: URL, descriptors: Int, extra: String = "") throws -> ZbusProcess {
    try ZbusProcess(arguments: ["--config", try mqNodeFile(directory, extra: extra)], directory: directory, timeout: 60,
                    openFileLimit: descriptors)
}

/// Sends one request and returns its reply.
private func call(_ client: WireClient, _ headers: [(String, String)], body: String? = nil) throws -> Message {
    #expect(client.request(headers, body: body))
    return try client.receive(timeout: 10)
}

/// Produces `body` to `mq` with an acknowledgement and consumes it back.
private func roundTrip(_ client: WireClient, mq: String, body: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let produced = try call(client, [("cmd", "produce"), ("mq", mq), ("ack", "1")], body: body)
    #expect(produced.status == 200, "produce to \(mq): \(produced.bodyString)", sourceLocation: sourceLocation)
    let consumed = try call(client, [("cmd", "consume"), ("mq", mq), ("timeout", "2000")])
    #expect(consumed.status == 200, "consume from \(mq): \(consumed.bodyString)", sourceLocation: sourceLocation)
    #expect(consumed.bodyString == body, sourceLocation: sourceLocation)
}

/// The directories of the MQ store (one per MQ).
private func storedMQs(_ directory: URL) -> [String] {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: directory.appendingPathComponent("store/mq").path)) ?? []
    return entries.filter { !$0.hasPrefix(".") }.sorted()
}

@Suite("MQ table hardening (issue 16)", .serialized, .blockingIO(.heavy))
struct MQTableHardeningTests {
    @Test("removing a master ends its slave's link, so a new MQ of that name may follow the slave (no cycle); both serve after a restart")
    func masterCycleRefused() throws {
        let directory = ZbusProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        var node = try startMQNode(directory: directory)
        defer { node.stop() }
        let client = try node.connect()
        #expect(try call(client, [("cmd", "create_mq"), ("mq_name", "A"), ("mq_mode", "0")]).status == 200)
        #expect(try call(client, [("cmd", "create_mq"), ("mq_name", "B"), ("mq_mode", "0"), ("master_mq", "A")]).status == 200)
        #expect(try call(client, [("cmd", "remove_mq"), ("mq_name", "A")]).status == 200)
        // B no longer follows A (a new A is another MQ, whose messages B's creator was never allowed to copy), so A
        // following B closes no cycle (A -> B -> A was refused with 400 while B kept naming A).
        let follower = try call(client, [("cmd", "create_mq"), ("mq_name", "A"), ("mq_mode", "0"), ("master_mq", "B")])
        #expect(follower.status == 200, "\(follower.bodyString)")
        client.close()
        node.stop()

        node = try startMQNode(directory: directory)
        let again = try node.connect()
        // B's message is copied to A, once (no cycle to recurse).
        try roundTrip(again, mq: "B", body: "to B")
        let copy = try call(again, [("cmd", "consume"), ("mq", "A"), ("timeout", "2000")])
        #expect(copy.status == 200 && copy.bodyString == "to B")
        // And what A gets is not copied to B.
        try roundTrip(again, mq: "A", body: "to A")
        let none = try call(again, [("cmd", "consume"), ("mq", "B"), ("timeout", "300")])
        #expect(none.status != 200 || none.bodyString != "to A", "\(none.status) \(none.bodyString)")
        #expect(node.isRunning)
    }

    @Test("a master cycle stored by an earlier version loads with the link broken and logged; produce does not recurse")
    func storedCycleLoads() throws {
        let directory = ZbusProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        var node = try startMQNode(directory: directory)
        let client = try node.connect()
        #expect(try call(client, [("cmd", "create_mq"), ("mq_name", "A"), ("mq_mode", "0")]).status == 200)
        #expect(try call(client, [("cmd", "create_mq"), ("mq_name", "B"), ("mq_mode", "0")]).status == 200)
        client.close()
        node.stop()

        // What the four requests of issue 16 left on disk under the old code: A follows B and B follows A.
        let store = try QueueStore(directory: directory.appendingPathComponent("store/mq").path, fsync: .none, logger: .init(label: "test"))
        for (name, master) in [("A", "B"), ("B", "A")] {
            let definition: [String: Any] = ["name": name, "mode": 1, "accessToken": "", "creator": "test", "masterMq": master,
                                             "maxLength": 0, "createdAt": 0]
            _ = try store.open(name: name, metadata: Array(try JSONSerialization.data(withJSONObject: definition)))
        }
        store.close()

        node = try startMQNode(directory: directory)
        defer { node.stop() }
        let again = try node.connect()
        try roundTrip(again, mq: "A", body: "to A")
        try roundTrip(again, mq: "B", body: "to B")
        #expect(node.isRunning)
        #expect(node.stderr.contains("stored master link ignored"))
    }

    @Test("under a 256-descriptor limit create_mq is refused with 503 naming the limit, leaves nothing, and the node restarts and serves")
    func createsUntilDescriptorsRunOut() throws {
        let directory = ZbusProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        var node: ZbusProcess? = try startNode(directory: directory, descriptors: 256)
        let client = try node!.connect()
        var created: [String] = []
        var refusal: Message?
        for index in 0..<300 {
            let name = String(format: "q%04d", index)
            let reply = try call(client, [("cmd", "create_mq"), ("mq_name", name), ("mq_mode", "0")])
            guard reply.status == 200 else {
                refusal = reply
                #expect(!storedMQs(directory).contains(name), "a refused create left its folder")
                break
            }
            created.append(name)
            // A produced message opens the MQ's segment file as well.
            #expect(try call(client, [("cmd", "produce"), ("mq", name), ("ack", "1")], body: name).status == 200)
        }
        let refused = try #require(refusal, "300 MQs were created under 256 descriptors")
        #expect(refused.status == 503, "\(refused.status ?? 0): \(refused.bodyString)")
        #expect(refused.bodyString.contains("RLIMIT_NOFILE"), "\(refused.bodyString)")
        #expect(storedMQs(directory).count == created.count)
        #expect(created.count >= 20)
        // Still serving after the refusal.
        let first = try call(client, [("cmd", "consume"), ("mq", created[0]), ("timeout", "2000")])
        #expect(first.status == 200 && first.bodyString == created[0])
        client.close()
        node!.stop()
        node = nil

        let restarted = try startNode(directory: directory, descriptors: 256)
        defer { restarted.stop() }
        let again = try restarted.connect()
        for name in [created[1], created[created.count - 1]] {
            let consumed = try call(again, [("cmd", "consume"), ("mq", name), ("timeout", "2000")])
            #expect(consumed.status == 200 && consumed.bodyString == name, "\(name): \(consumed.bodyString)")
        }
        #expect(try call(again, [("cmd", "remove_mq"), ("mq_name", created[2])]).status == 200)
        #expect(try call(again, [("cmd", "create_mq"), ("mq_name", "fresh"), ("mq_mode", "0")]).status == 200)
        try roundTrip(again, mq: "fresh", body: "new MQ after restart")
    }

    @Test("a store holding more MQs than the descriptor limit allows starts, writes its ready file and serves them all")
    func storeLargerThanDescriptorLimit() throws {
        let directory = ZbusProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let count = 150  // up to 3 descriptors each once written: 450, far over 256
        let node = try startMQNode(directory: directory)
        let client = try node.connect()
        for index in 0..<count {
            let name = String(format: "q%04d", index)
            #expect(try call(client, [("cmd", "create_mq"), ("mq_name", name), ("mq_mode", "0")]).status == 200)
            #expect(try call(client, [("cmd", "produce"), ("mq", name), ("ack", "1")], body: name).status == 200)
        }
        client.close()
        node.stop()

        let limited = try startNode(directory: directory, descriptors: 256)
        defer { limited.stop() }
        let again = try limited.connect()
        #expect(try call(again, [("cmd", "test")]).status == 200)
        // Every MQ answers; each is consumed, so MQs opened on first use keep fitting.
        for index in stride(from: 0, to: count, by: 15) + [count - 1] {
            let name = String(format: "q%04d", index)
            let consumed = try call(again, [("cmd", "consume"), ("mq", name), ("timeout", "2000")])
            #expect(consumed.status == 200 && consumed.bodyString == name, "\(name): \(consumed.status ?? 0) \(consumed.bodyString)")
        }
        let data = try jsonBody(try call(again, [("cmd", "data")]))
        #expect((data["mqTable"] as? [String: Any])?.count == count)
        #expect(try call(again, [("cmd", "create_mq"), ("mq_name", "fresh"), ("mq_mode", "0")]).status == 200)
        try roundTrip(again, mq: "fresh", body: "new MQ")
    }

    @Test("max_mqs refuses create_mq with 503 naming mq.max_mqs, and leaves no folder")
    func maxMqsRefused() throws {
        let directory = ZbusProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let node = try startMQNode(directory: directory, extra: "    max_mqs: 3\n")
        defer { node.stop() }
        let client = try node.connect()
        for name in ["a", "b", "c"] {
            #expect(try call(client, [("cmd", "create_mq"), ("mq_name", name), ("mq_mode", "0")]).status == 200)
        }
        let refused = try call(client, [("cmd", "create_mq"), ("mq_name", "d"), ("mq_mode", "0")])
        #expect(refused.status == 503)
        #expect(refused.bodyString.contains("MQ limit reached: 3 MQs (mq.max_mqs)"), "\(refused.bodyString)")
        #expect(storedMQs(directory) == ["a", "b", "c"])
    }

    @Test("bad MQ names get 400 naming the rule, echo only a short prefix, and invalid UTF-8 never collapses into one MQ")
    func badNames() throws {
        let directory = ZbusProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let node = try startMQNode(directory: directory)
        defer { node.stop() }
        let client = try node.connect()
        let long = String(repeating: "x", count: 10_000)
        for headers in [[("cmd", "create_mq"), ("mq_name", long), ("mq_mode", "0")], [("cmd", "remove_mq"), ("mq_name", long)],
                        [("cmd", "produce"), ("mq", long), ("ack", "1")], [("cmd", "consume"), ("mq", long)]] {
            let reply = try call(client, headers)
            #expect(reply.status == 400, "\(headers[0].1): \(reply.status ?? 0)")
            #expect(reply.bodyString.contains("more than 255"), "\(reply.bodyString.prefix(200))")
            #expect(reply.bodyString.utf8.count < 400 && (reply.headers["mq"]?.utf8.count ?? 0) < 400)
        }
        // 100 characters outside [A-Za-z0-9._-] do not fit a directory name: 400, not 500.
        let wide = try call(client, [("cmd", "create_mq"), ("mq_name", String(repeating: "é", count: 100)), ("mq_mode", "0")])
        #expect(wide.status == 400, "\(wide.bodyString)")

        for bad: [UInt8] in [[0x61, 0xFF], [0x61, 0xFE], [0x61, 0x01, 0x62]] {
            let raw = try node.connect()
            let request = Array("GET / HTTP/1.1\r\ncmd: create_mq\r\nmq_mode: 0\r\nmq_name: ".utf8) + bad + Array("\r\ncontent-length: 0\r\n\r\n".utf8)
            #expect(raw.send(request))
            let reply = try raw.receive(timeout: 10)
            #expect(reply.status == 400, "\(bad): \(reply.bodyString)")
            raw.close()
        }
        let data = try jsonBody(try call(client, [("cmd", "data")]))
        #expect((data["mqTable"] as? [String: Any])?.isEmpty == true)
        #expect(storedMQs(directory).isEmpty)
    }
}
