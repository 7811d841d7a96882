import Foundation
import Testing
import ZbusKernel
import ZbusTestSupport

@Suite("MQ durability and delivery", .serialized, .blockingIO(.heavy))
struct MQDurabilityTests {
    @Test("MQs of every mode, tokens, master/slave links and backlogs survive three restarts in a row")
    func threeRestarts() throws {
        let directory = ZbusProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        var node = try startMQNode(directory: directory)
        var client = try node.connect()
        let definitions: [(String, Int, String?)] = [("PLAIN", 1, nil), ("PUBSUB", 2, nil), ("MEMORY", 5, nil), ("RPC", 9, nil),
                                                    ("SECRET", 1, "tok"), ("MASTER", 1, "mt")]
        for (name, mode, token) in definitions {
            var headers = [("cmd", "create_mq"), ("mq_name", name), ("mq_mode", String(mode))]
            if let token { headers.append(("access_token", token)) }
            client.request(headers)
            expectReply(try client.receive(), status: 200)
        }
        client.request([("cmd", "create_mq"), ("mq_name", "SLAVE"), ("mq_mode", "1"), ("master_mq", "MASTER"), ("master_token", "mt")])
        expectReply(try client.receive(), status: 200)
        for index in 0..<5 {
            client.request([("cmd", "produce"), ("mq", "PLAIN"), ("id", "m\(index)")], body: "plain-\(index)")
            expectReply(try client.receive(), status: 200)
        }
        client.request([("cmd", "produce"), ("mq", "SECRET"), ("token", "tok")], body: "secret")
        expectReply(try client.receive(), status: 200)

        var consumedPlain = 0
        for restart in 1...3 {
            #expect(node.stop() == 0, "clean stop \(restart)")
            node = try startMQNode(directory: directory)
            client = try node.connect()
            client.request([("cmd", "data")])
            let table = try #require(try jsonBody(try client.receive())["mqTable"] as? [String: [String: Any]])
            for (name, mode, token) in definitions + [("SLAVE", 1, nil)] {
                if let token {
                    // A protected MQ is left out of `data`; its token shows it (`query_mq`), so the token survived too.
                    #expect(table[name] == nil, "restart \(restart): \(name) hidden from data")
                    client.request([("cmd", "query_mq"), ("mq", name), ("token", token)])
                    #expect(try jsonBody(try client.receive())["mode"] as? Int == mode, "restart \(restart): mode of \(name)")
                } else {
                    #expect(table[name]?["mode"] as? Int == mode, "restart \(restart): mode of \(name)")
                }
            }
            #expect(table["PLAIN"]?["unconsumedMsgCount"] as? Int == 5 - consumedPlain, "restart \(restart): backlog")
            #expect((table["PLAIN"]?["creator"] as? String)?.hasPrefix("127.0.0.1:") == true)
            client.request([("cmd", "produce"), ("mq", "SECRET")], body: "no token")
            expectReply(try client.receive(), status: 403)
            client.request([("cmd", "produce"), ("mq", "MASTER"), ("token", "mt"), ("id", "via-master-\(restart)")], body: "copy \(restart)")
            expectReply(try client.receive(), status: 200)
            client.request([("cmd", "consume"), ("mq", "SLAVE"), ("id", "s\(restart)"), ("timeout", "2000")])
            expectReply(try client.receive(), status: 200, body: "copy \(restart)", headers: ["rawid": "via-master-\(restart)"])
            // Acknowledge it (the next consume does), or it is delivered again after the restart: at-least-once.
            client.request([("cmd", "consume"), ("mq", "SLAVE"), ("timeout", "0")])
            expectReply(try client.receive(), status: 204)
            // Consume one PLAIN message per round; the next consume acknowledges it.
            let consumer = try node.connect()
            consumer.request([("cmd", "consume"), ("mq", "PLAIN"), ("id", "c")])
            expectReply(try consumer.receive(), status: 200, body: "plain-\(consumedPlain)")
            consumer.request([("cmd", "consume"), ("mq", "PLAIN"), ("id", "ack"), ("timeout", "0")])
            _ = try consumer.receive()
            consumedPlain += 1
            // A subscriber keeps working on the restored pub/sub MQ.
            let subscriber = try node.connect()
            subscriber.request([("cmd", "consume"), ("mq", "PUBSUB"), ("topic", "t"), ("timeout", "3000")])
            try node.waitForParkedConsumes("PUBSUB", count: 1)
            client.request([("cmd", "produce"), ("mq", "PUBSUB"), ("topic", "t")], body: "news")
            expectReply(try client.receive(), status: 200)
            expectReply(try subscriber.receive(), status: 200, body: "news")
        }
        node.cleanUp()
    }

    @Test("remove_mq deletes the files: the MQ does not come back after a restart")
    func removeDeletesFiles() throws {
        let directory = ZbusProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        var node = try startMQNode(directory: directory)
        let client = try node.connect()
        client.request([("cmd", "create_mq"), ("mq_name", "Gone"), ("mq_mode", "1")])
        _ = try client.receive()
        client.request([("cmd", "produce"), ("mq", "Gone")], body: "x")
        _ = try client.receive()
        client.request([("cmd", "remove_mq"), ("mq_name", "Gone")])
        expectReply(try client.receive(), status: 200)
        node.stop()
        node = try startMQNode(directory: directory)
        defer { node.cleanUp() }
        let again = try node.connect()
        again.request([("cmd", "query_mq"), ("mq", "Gone")])
        expectReply(try again.receive(), status: 404)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: directory.appendingPathComponent("store/mq").path)
        #expect(!leftovers.contains { $0.contains("Gone") })
    }

    @Test("a consumer that takes a message and drops its connection: the message goes to the next consumer")
    func redeliveryAfterDrop() throws {
        let node = try startMQNode()
        defer { node.cleanUp() }
        let producer = try node.connect()
        producer.request([("cmd", "create_mq"), ("mq_name", "Work"), ("mq_mode", "1")])
        _ = try producer.receive()
        let waiting = try node.connect()
        waiting.request([("cmd", "consume"), ("mq", "Work"), ("id", "w")])
        try node.waitForParkedConsumes("Work", count: 1)
        let first = try node.connect()
        first.request([("cmd", "consume"), ("mq", "Work"), ("id", "f")])
        for index in 0..<3 {
            producer.request([("cmd", "produce"), ("mq", "Work"), ("id", "job\(index)")], body: "job \(index)")
            expectReply(try producer.receive(), status: 200)
        }
        // `waiting` got job0 and `first` got job1; `first` dies without asking for more.
        expectReply(try waiting.receive(), status: 200, body: "job 0")
        expectReply(try first.receive(), status: 200, body: "job 1")
        first.close(reset: true)
        // The node puts what `first` held back when it forgets `first`: one consumer (`waiting`) is left.
        try node.waitForConsumers("Work", count: 1)
        let next = try node.connect()
        next.request([("cmd", "consume"), ("mq", "Work"), ("id", "n1")])
        expectReply(try next.receive(), status: 200, body: "job 1", headers: ["rawid": "job1"])
        next.request([("cmd", "consume"), ("mq", "Work"), ("id", "n2")])
        expectReply(try next.receive(), status: 200, body: "job 2")
        next.request([("cmd", "consume"), ("mq", "Work"), ("id", "n3"), ("timeout", "200")])
        expectReply(try next.receive(), status: 204, headers: ["id": "n3"])
    }

    @Test("a clean restart delivers only what was never acknowledged, also when it sits above a message still held")
    func acknowledgedAboveAHeldMessageStayConsumed() throws {
        let directory = ZbusProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        var node = try startMQNode(directory: directory)
        let producer = try node.connect()
        producer.request([("cmd", "create_mq"), ("mq_name", "Held"), ("mq_mode", "1")])
        _ = try producer.receive()
        for index in 1...4 {
            producer.request([("cmd", "produce"), ("mq", "Held")], body: "m\(index)")
            expectReply(try producer.receive(), status: 200)
        }
        // `holder` takes m1 and never acknowledges it; `worker` takes and acknowledges m2, m3 and m4 (each next
        // consume acknowledges the one before; the last one's 204 proves the node took it).
        let holder = try node.connect()
        holder.request([("cmd", "consume"), ("mq", "Held")])
        expectReply(try holder.receive(), status: 200, body: "m1")
        let worker = try node.connect()
        for index in 2...4 {
            worker.request([("cmd", "consume"), ("mq", "Held")])
            expectReply(try worker.receive(), status: 200, body: "m\(index)")
        }
        worker.request([("cmd", "consume"), ("mq", "Held"), ("timeout", "100")])
        expectReply(try worker.receive(), status: 204)
        #expect(node.stop() == 0)

        node = try startMQNode(directory: directory)
        #expect(try drain(node, mq: "Held") == ["m1"], "m2...m4 were acknowledged: only m1 comes again")
        #expect(node.stop() == 0)
        node = try startMQNode(directory: directory)
        defer { node.cleanUp() }
        #expect(try drain(node, mq: "Held") == [])
    }

    @Test("a server-side consume timeout answers 204 and leaves nothing behind that could swallow the next message")
    func consumeTimeout() throws {
        let node = try startMQNode()
        defer { node.cleanUp() }
        let client = try node.connect()
        client.request([("cmd", "create_mq"), ("mq_name", "T"), ("mq_mode", "1")])
        _ = try client.receive()
        let consumer = try node.connect()
        consumer.request([("cmd", "consume"), ("mq", "T"), ("id", "t1"), ("timeout", "200")])
        expectReply(try consumer.receive(timeout: 3), status: 204, body: "", headers: ["id": "t1", "mq": "T"])
        client.request([("cmd", "produce"), ("mq", "T"), ("id", "after")], body: "not lost")
        _ = try client.receive()
        consumer.request([("cmd", "consume"), ("mq", "T"), ("id", "t2"), ("timeout", "2000")])
        expectReply(try consumer.receive(), status: 200, body: "not lost", headers: ["id": "t2", "rawid": "after"])
        consumer.request([("cmd", "consume"), ("mq", "T"), ("timeout", "soon")])
        expectReply(try consumer.receive(), status: 400)
        // `timeout: 0` asks only for what is there: an empty MQ answers 204 at once.
        consumer.request([("cmd", "consume"), ("mq", "T"), ("id", "t0"), ("timeout", "0")])
        expectReply(try consumer.receive(timeout: 3), status: 204, body: "", headers: ["id": "t0", "mq": "T"])
        // Several parked consumes with different limits, pub/sub included, each expire on their own.
        client.request([("cmd", "create_mq"), ("mq_name", "Topics"), ("mq_mode", "2")])
        _ = try client.receive()
        let subscriber = try node.connect()
        subscriber.request([("cmd", "consume"), ("mq", "Topics"), ("topic", "a"), ("id", "s1"), ("timeout", "300")])
        let patient = try node.connect()
        patient.request([("cmd", "consume"), ("mq", "T"), ("id", "p1"), ("timeout", "60000")])
        consumer.request([("cmd", "consume"), ("mq", "T"), ("id", "t3"), ("timeout", "100")])
        expectReply(try consumer.receive(timeout: 3), status: 204, headers: ["id": "t3"])
        expectReply(try subscriber.receive(timeout: 3), status: 204, headers: ["id": "s1", "mq": "Topics"])
        client.request([("cmd", "produce"), ("mq", "T"), ("id", "late")], body: "for the patient one")
        _ = try client.receive()
        expectReply(try patient.receive(timeout: 3), status: 200, body: "for the patient one", headers: ["id": "p1"])
    }

    @Test("max_length: a produce beyond it gets 429 and nothing is stored")
    func peakShaving() throws {
        let node = try startMQNode()
        defer { node.cleanUp() }
        let client = try node.connect()
        client.request([("cmd", "create_mq"), ("mq_name", "Small"), ("mq_mode", "1"), ("max_length", "2")])
        _ = try client.receive()
        for index in 0..<2 {
            client.request([("cmd", "produce"), ("mq", "Small")], body: "\(index)")
            expectReply(try client.receive(), status: 200)
        }
        client.request([("cmd", "produce"), ("mq", "Small"), ("id", "over")], body: "over")
        let refused = try client.receive()
        expectReply(refused, status: 429, headers: ["id": "over"])
        #expect(refused.bodyString.contains("max_length"))
        client.request([("cmd", "query_mq"), ("mq", "Small")])
        #expect(try jsonBody(try client.receive())["unconsumedMsgCount"] as? Int == 2)
    }

    @Test("messages from one connection are stored in the order sent (pipelined)")
    func perConnectionOrder() throws {
        let node = try startMQNode()
        defer { node.cleanUp() }
        let client = try node.connect()
        client.request([("cmd", "create_mq"), ("mq_name", "Ordered"), ("mq_mode", "1")])
        _ = try client.receive()
        var batch = ""
        for index in 0..<2000 {
            batch += "POST / HTTP/1.1\r\ncmd: produce\r\nmq: Ordered\r\nack: 0\r\ncontent-length: \(String(index).utf8.count)\r\n\r\n\(index)"
        }
        client.send(batch)
        let consumer = try node.connect()
        for index in 0..<2000 {
            consumer.request([("cmd", "consume"), ("mq", "Ordered"), ("timeout", "5000")])
            let reply = try consumer.receive()
            #expect(reply.bodyString == String(index))
            if reply.bodyString != String(index) { break }
        }
    }

    @Test("fsync: always: pipelined produces of several connections are each acknowledged once, in order, and stored")
    func groupCommitAcknowledgements() throws {
        let node = try startMQNode(extra: "    fsync: always\n")
        defer { node.cleanUp() }
        let admin = try node.connect()
        admin.request([("cmd", "create_mq"), ("mq_name", "Synced"), ("mq_mode", "1")])
        _ = try admin.receive()
        let connections = 6, perConnection = 300
        let producers = try (0..<connections).map { _ in try node.connect() }
        // Every connection pipelines all its produces at once, so that one group commit covers messages of several
        // connections accepted on both event loops.
        for (index, producer) in producers.enumerated() {
            var batch = ""
            for sequence in 0..<perConnection {
                let body = "\(index)-\(sequence)"
                batch += "POST / HTTP/1.1\r\ncmd: produce\r\nmq: Synced\r\nid: p\(index)-\(sequence)\r\ncontent-length: \(body.utf8.count)\r\n\r\n\(body)"
            }
            producer.send(batch)
        }
        for (index, producer) in producers.enumerated() {
            for sequence in 0..<perConnection {
                let reply = try producer.receive()
                #expect(reply.status == 200)
                #expect(reply.headers["id"] == "p\(index)-\(sequence)")
                if reply.headers["id"] != "p\(index)-\(sequence)" { return }
            }
            #expect(try producer.receiveIfAny(timeout: 0.1) == nil, "one acknowledgement per produce")
        }
        admin.request([("cmd", "query_mq"), ("mq", "Synced")])
        #expect(try jsonBody(try admin.receive())["unconsumedMsgCount"] as? Int == connections * perConnection)
    }
}
