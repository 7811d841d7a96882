import Foundation
import Testing
import ZbusKernel
import ZbusTestSupport

/// A node file with the `mq` module, for tests.
func mqNodeFile(_ directory: URL, extra: String = "") throws -> String {
    let path = directory.appendingPathComponent("node-\(UUID().uuidString).yaml")
    try "modules:\n  - module: mq\n\(extra)".write(to: path, atomically: false, encoding: .utf8)
    return path.path
}

/// Starts the real binary with the `mq` module on a fresh store (or `directory` to reuse one).
func startMQNode(directory: URL? = nil, extra: String = "") throws -> ZbusProcess {
    let directory = directory ?? ZbusProcess.makeTemporaryDirectory()
    return try ZbusProcess(arguments: ["--config", try mqNodeFile(directory, extra: extra)], directory: directory)
}

/// Checks a reply's status, body and headers; a `nil` body skips the body, `timeBody` expects epoch milliseconds.
func expectReply(_ reply: Message, status: Int, body: String? = nil, timeBody: Bool = false, headers: [String: String?] = [:],
                 sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(reply.status == status, "status", sourceLocation: sourceLocation)
    if let body { #expect(reply.bodyString == body, sourceLocation: sourceLocation) }
    if timeBody {
        let millis = Int64(reply.bodyString) ?? 0
        #expect(abs(millis - Int64(Date().timeIntervalSince1970 * 1000)) < 60_000, "time body: \(reply.bodyString)", sourceLocation: sourceLocation)
    }
    for (name, value) in headers {
        #expect(reply.headers[name] == value, "header \(name)", sourceLocation: sourceLocation)
    }
}

/// Parses a JSON reply body.
func jsonBody(_ reply: Message) throws -> [String: Any] {
    try #require(JSONSerialization.jsonObject(with: Data(reply.bodyString.utf8)) as? [String: Any])
}

/// Replays ../shared/spec/transcripts/probe.py, probe2.py and probe4 against the real binary; each step's expected
/// answer is the transcript's, except the documented fixes (marked FIX).
@Suite("MQ transcripts", .serialized, .blockingIO(.heavy))
struct MQTranscriptTests {
    @Test("probe.py: every command, errors, id/rawid swap, pipelining, ack=0, route, key filter")
    func probe() throws {
        let node = try startMQNode()
        defer { node.cleanUp() }
        let a = try node.connect()
        a.request([("cmd", "bogus"), ("id", "x1")])
        expectReply(try a.receive(), status: 400, body: "Bad format: command(bogus) not support", headers: ["id": "x1"])
        a.request([("cmd", "auth"), ("id", "x1b")])
        expectReply(try a.receive(), status: 400, body: "Bad format: command(auth) not support", headers: ["id": "x1b"])
        a.request([("cmd", "test"), ("id", "x2")])
        expectReply(try a.receive(), status: 200, body: "OK", headers: ["id": "x2"])
        a.request([("cmd", "heartbeat"), ("id", "x3")])
        #expect(try a.receiveIfAny(timeout: 0.3) == nil)
        a.request([("cmd", "produce"), ("mq", "NoSuch"), ("id", "x4")], body: "hi")
        expectReply(try a.receive(), status: 404, body: "MQ(NoSuch) Not Found", headers: ["mq": "NoSuch", "id": "x4"])
        a.request([("cmd", "consume"), ("mq", "NoSuch"), ("id", "x5")])
        expectReply(try a.receive(), status: 404, body: "MQ(NoSuch) Not Found", headers: ["mq": "NoSuch", "id": "x5"])
        a.request([("cmd", "create_mq"), ("id", "x6")])
        expectReply(try a.receive(), status: 400, body: "Bad format: Missing mq_name", headers: ["id": "x6"])
        a.request([("cmd", "create_mq"), ("mq_name", "Q1"), ("id", "x7")])
        expectReply(try a.receive(), status: 400, body: "Bad format: Missing mq_mode", headers: ["id": "x7"])
        a.request([("cmd", "create_mq"), ("mq_name", "Q1"), ("mq_mode", "abc"), ("id", "x8")])
        expectReply(try a.receive(), status: 400, body: "Bad format: mq_mode invalid", headers: ["id": "x8"])
        a.request([("cmd", "create_mq"), ("mq_name", "Q1"), ("mq_mode", "1"), ("id", "x9")])
        expectReply(try a.receive(), status: 200, timeBody: true, headers: ["id": "x9", "mq": nil])
        a.request([("cmd", "create_mq"), ("mq_name", "Q1"), ("mq_mode", "1"), ("id", "x10")])
        expectReply(try a.receive(), status: 200, timeBody: true, headers: ["id": "x10"])
        a.request([("cmd", "produce"), ("mq", "Q1"), ("id", "p1"), ("X-Custom", "Abc")], body: "hello world", method: "POST")
        expectReply(try a.receive(), status: 200, timeBody: true, headers: ["id": "p1", "mq": "Q1"])
        a.request([("cmd", "produce"), ("mq", "Q1"), ("id", "p2"), ("ack", "0")], body: "second")
        #expect(try a.receiveIfAny(timeout: 0.3) == nil, "ack=0: no reply")

        a.request([("cmd", "query_mq"), ("mq", "Q1"), ("id", "q1")])
        let q1 = try a.receive()
        expectReply(q1, status: 200, headers: ["id": "q1", "content-type": "application/json"])
        let info = try jsonBody(q1)
        #expect(info["name"] as? String == "Q1")
        #expect(info["mode"] as? Int == 1)
        #expect(info["consumerCount"] as? Int == 0)
        #expect(info["unconsumedMsgCount"] as? Int == 2)
        #expect((info["creator"] as? String)?.hasPrefix("127.0.0.1:") == true)
        #expect((info["consumerInfoList"] as? [Any])?.isEmpty == true)
        #expect(info["lastUpdateTime"] is Int)
        for (command, id) in [("query_mq", "q2"), ("data", "q3")] {
            a.request([("cmd", command), ("id", id)])
            let reply = try a.receive()
            expectReply(reply, status: 200, headers: ["id": id, "content-type": "application/json"])
            let broker = try jsonBody(reply)
            #expect(broker["broker"] as? String == "127.0.0.1:\(node.port)")
            #expect(broker["lastUpdatedTime"] is Int)
            let table = try #require(broker["mqTable"] as? [String: [String: Any]])
            #expect(table["Q1"]?["unconsumedMsgCount"] as? Int == 2)
        }

        // A consumer on another connection: id/rawid swap, producer's headers kept, sender = producer's session.
        let b = try node.connect()
        b.request([("cmd", "consume"), ("mq", "Q1"), ("id", "c1")])
        let c1 = try b.receive()
        expectReply(c1, status: 200, body: "hello world", headers: ["id": "c1", "rawid": "p1", "mq": "Q1", "x-custom": "Abc", "server": "127.0.0.1:\(node.port)", "cmd": nil])
        #expect(c1.remoteAddr?.hasPrefix("127.0.0.1:") == true)
        let producerSession = try #require(c1.sender)
        #expect(producerSession.count == 36)
        b.request([("cmd", "consume"), ("mq", "Q1"), ("id", "c2")])
        expectReply(try b.receive(), status: 200, body: "second", headers: ["id": "c2", "rawid": "p2"])
        b.request([("cmd", "consume"), ("mq", "Q1"), ("id", "c3")])
        #expect(try b.receiveIfAny(timeout: 0.5) == nil, "long-poll waits")
        b.request([("cmd", "consume"), ("mq", "Q1"), ("id", "c4")])
        #expect(try b.receiveIfAny(timeout: 0.3) == nil)
        a.request([("cmd", "query_mq"), ("mq", "Q1"), ("id", "q4")])
        let q4 = try jsonBody(try a.receive())
        #expect(q4["consumerCount"] as? Int == 1)
        #expect(q4["unconsumedMsgCount"] as? Int == 0)
        let waiting = try #require(q4["consumerInfoList"] as? [[String: Any]])
        #expect(waiting.count == 1)
        #expect(waiting.first?["status"] as? String == "CONNECTED")
        #expect(waiting.first?["topics"] as? [String] == [], "FIX: topics is an array, not {\"empty\":true}")
        a.request([("cmd", "produce"), ("mq", "Q1"), ("id", "p3")], body: "third")
        expectReply(try a.receive(), status: 200, timeBody: true, headers: ["id": "p3"])
        expectReply(try b.receive(), status: 200, body: "third", headers: ["id": "c4", "rawid": "p3"])

        // MQ-RPC style: produce with ack=0, the consumer routes the answer back to the producer's session.
        a.request([("cmd", "produce"), ("mq", "Q1"), ("id", "rq1"), ("ack", "0")], body: "request")
        b.request([("cmd", "consume"), ("mq", "Q1"), ("id", "c5")])
        let request = try b.receive()
        expectReply(request, status: 200, body: "request", headers: ["id": "c5", "rawid": "rq1", "sender": producerSession])
        b.send(Message(status: 200, headers: Headers([("cmd", "route"), ("recver", producerSession), ("id", "rq1"), ("mq", "Q1"), ("ack", "0")]),
                       body: .init(string: "reply-body")))
        let routed = try a.receive()
        expectReply(routed, status: 200, body: "reply-body", headers: ["id": "rq1", "mq": "Q1", "recver": nil, "cmd": nil, "ack": nil])
        #expect(routed.sender != producerSession, "sender describes the router")
        b.request([("cmd", "route"), ("recver", producerSession), ("id", "rq1"), ("reply_code", "200")], body: "reply-as-request")
        let converted = try a.receive()
        expectReply(converted, status: 200, body: "reply-as-request", headers: ["reply_code": nil, "id": "rq1"])
        b.request([("cmd", "route"), ("recver", producerSession), ("id", "rq1e"), ("reply_code", "500")], body: "failed")
        expectReply(try a.receive(), status: 500, body: "failed", headers: ["id": "rq1e"])
        b.request([("cmd", "route"), ("recver", "nobody"), ("id", "rq2")], body: "x")
        #expect(try b.receiveIfAny(timeout: 0.3) == nil)
        #expect(try a.receiveIfAny(timeout: 0.1) == nil)

        // Keys.
        a.request([("cmd", "add_key"), ("mq", "Q1"), ("key", "k1"), ("id", "k1")])
        expectReply(try a.receive(), status: 200, body: "1", headers: ["id": "k1", "mq": "Q1"])
        a.request([("cmd", "add_key"), ("mq", "Q1"), ("key", "k1"), ("id", "k2")])
        expectReply(try a.receive(), status: 200, body: "0", headers: ["id": "k2"])
        a.request([("cmd", "produce"), ("mq", "Q1"), ("key", "k1"), ("id", "k3")], body: "dup")
        let duplicate = try a.receive()
        // FIX: 6.3.0 answered a bare timestamp; the body names the MQ and the key (no 2016 client reads it).
        expectReply(duplicate, status: 406, body: "MQ(Q1) duplicate key 'k1' in key group ''; nothing stored", headers: ["id": "k3", "mq": "Q1"])
        a.request([("cmd", "produce"), ("mq", "Q1"), ("key", "k9"), ("id", "k4")], body: "first-k9")
        expectReply(try a.receive(), status: 200, timeBody: true, headers: ["id": "k4"])
        a.request([("cmd", "produce"), ("mq", "Q1"), ("key", "k9"), ("id", "k5")], body: "second-k9")
        expectReply(try a.receive(), status: 406, body: "MQ(Q1) duplicate key 'k9' in key group ''; nothing stored", headers: ["id": "k5"])
        a.request([("cmd", "remove_key"), ("mq", "Q1"), ("key", "k9"), ("id", "k6")])
        expectReply(try a.receive(), status: 200, body: "1", headers: ["id": "k6"])
        a.request([("cmd", "remove_key"), ("mq", "Q1"), ("id", "k7")])
        expectReply(try a.receive(), status: 200, body: "1", headers: ["id": "k7"])

        // URL forms.
        a.send("GET /?cmd=test HTTP/1.1\r\n\r\n")
        expectReply(try a.receive(), status: 200, body: "OK", headers: ["id": nil])
        a.send("GET /Q1/?cmd=query_mq HTTP/1.1\r\n\r\n")
        let urlQuery = try a.receive()
        #expect(try jsonBody(urlQuery)["unconsumedMsgCount"] as? Int == 1)
        a.send("GET /Q1 HTTP/1.1\r\n\r\n")
        expectReply(try a.receive(), status: 400, body: "Bad format: command(null) not support")
        a.send("GET /foo/bar HTTP/1.1\r\n\r\n")
        expectReply(try a.receive(), status: 400, body: "Bad format: command(null) not support")

        // remove_mq.
        a.request([("cmd", "remove_mq"), ("mq_name", "Q1"), ("id", "r1")])
        expectReply(try a.receive(), status: 200, timeBody: true, headers: ["id": "r1"])
        a.request([("cmd", "remove_mq"), ("mq_name", "Q1"), ("id", "r2")])
        expectReply(try a.receive(), status: 404, body: "MQ(Q1) Not Found", headers: ["id": "r2"])  // FIX: 6.3.0 said MQ(null)
        a.request([("cmd", "produce"), ("mq", "Q1"), ("id", "r3")], body: "gone")
        expectReply(try a.receive(), status: 404, body: "MQ(Q1) Not Found")
    }

    @Test("probe2.py: pub/sub, memory and RPC modes, tokens, master/slave, messages without id, pipelining")
    func probe2() throws {
        let node = try startMQNode()
        defer { node.cleanUp() }
        let a = try node.connect()
        a.request([("cmd", "create_mq"), ("mq_name", "PS"), ("mq_mode", "2"), ("id", "ps0")])
        expectReply(try a.receive(), status: 200, timeBody: true, headers: ["id": "ps0"])
        let s1 = try node.connect()
        let s2 = try node.connect()
        let s3 = try node.connect()
        s1.request([("cmd", "consume"), ("mq", "PS"), ("topic", "sport,news"), ("id", "s1a")])
        s2.request([("cmd", "consume"), ("mq", "PS"), ("topic", "*"), ("id", "s2a")])
        s3.request([("cmd", "consume"), ("mq", "PS"), ("id", "s3a")])
        try node.waitForParkedConsumes("PS", count: 3)
        a.request([("cmd", "query_mq"), ("mq", "PS"), ("id", "psq")])
        let query = try jsonBody(try a.receive())
        #expect(query["mode"] as? Int == 2)
        #expect(query["consumerCount"] as? Int == 3)
        let subscribers = try #require(query["consumerInfoList"] as? [[String: Any]])
        #expect(Set(subscribers.compactMap { ($0["topics"] as? [String])?.joined(separator: ",") }) == ["news,sport", "*", ""])
        a.request([("cmd", "produce"), ("mq", "PS"), ("topic", "sport"), ("id", "pub1")], body: "goal")
        expectReply(try a.receive(), status: 200, timeBody: true, headers: ["id": "pub1", "mq": "PS"])
        expectReply(try s1.receive(), status: 200, body: "goal", headers: ["id": "s1a", "rawid": "pub1", "topic": "sport"])
        expectReply(try s2.receive(), status: 200, body: "goal", headers: ["id": "s2a", "rawid": "pub1"])
        #expect(try s3.receiveIfAny(timeout: 0.3) == nil)
        a.request([("cmd", "produce"), ("mq", "PS"), ("id", "pub2")], body: "no-topic")
        expectReply(try a.receive(), status: 200, headers: ["id": "pub2"])
        s2.request([("cmd", "consume"), ("mq", "PS"), ("topic", "*"), ("id", "s2b")])
        // FIX: 6.3.0 dropped messages without a topic; `*` subscribers get them.
        expectReply(try s2.receive(), status: 200, body: "no-topic", headers: ["id": "s2b", "rawid": "pub2"])
        a.request([("cmd", "produce"), ("mq", "PS"), ("topic", "news"), ("id", "pub3")], body: "n1")
        a.request([("cmd", "produce"), ("mq", "PS"), ("topic", "news"), ("id", "pub4")], body: "n2")
        _ = try a.receive()
        _ = try a.receive()
        s1.request([("cmd", "consume"), ("mq", "PS"), ("topic", "sport,news"), ("id", "s1b")])
        expectReply(try s1.receive(), status: 200, body: "n1", headers: ["id": "s1b", "rawid": "pub3", "topic": "news"])
        s1.request([("cmd", "consume"), ("mq", "PS"), ("topic", "sport,news"), ("id", "s1c")])
        expectReply(try s1.receive(), status: 200, body: "n2", headers: ["id": "s1c", "rawid": "pub4"])

        a.request([("cmd", "create_mq"), ("mq_name", "MEM"), ("mq_mode", "5"), ("id", "m0")])
        expectReply(try a.receive(), status: 200, headers: ["id": "m0"])
        a.request([("cmd", "produce"), ("mq", "MEM"), ("id", "m1")], body: "in-memory")
        expectReply(try a.receive(), status: 200, timeBody: true, headers: ["id": "m1", "mq": "MEM"])

        a.request([("cmd", "create_mq"), ("mq_name", "RPCQ"), ("mq_mode", "8"), ("id", "r0")])
        expectReply(try a.receive(), status: 200, headers: ["id": "r0"])
        a.request([("cmd", "produce"), ("mq", "RPCQ"), ("ack", "0"), ("id", "r1")], body: #"{"method":"echo","params":["x"]}"#)
        expectReply(try a.receive(), status: 404, body: "MQ(RPCQ) Service Down", headers: ["id": "r1", "mq": "RPCQ"])
        let service = try node.connect()
        service.request([("cmd", "consume"), ("mq", "RPCQ"), ("id", "svc1")])
        try node.waitForParkedConsumes("RPCQ", count: 1)
        a.request([("cmd", "produce"), ("mq", "RPCQ"), ("ack", "0"), ("id", "r2")], body: "call")
        expectReply(try service.receive(), status: 200, body: "call", headers: ["id": "svc1", "rawid": "r2"])

        a.request([("cmd", "create_mq"), ("mq_name", "SEC"), ("mq_mode", "1"), ("access_token", "tok"), ("id", "t0")])
        expectReply(try a.receive(), status: 200, headers: ["id": "t0"])
        a.request([("cmd", "produce"), ("mq", "SEC"), ("id", "t1")], body: "x")
        expectReply(try a.receive(), status: 403, body: "MQ(SEC) forbidden", headers: ["id": "t1", "mq": "SEC"])  // FIX: spelling
        a.request([("cmd", "produce"), ("mq", "SEC"), ("token", "tok"), ("id", "t2")], body: "x")
        expectReply(try a.receive(), status: 200, timeBody: true, headers: ["id": "t2"])
        a.request([("cmd", "consume"), ("mq", "SEC"), ("id", "t3")])
        expectReply(try a.receive(), status: 403, headers: ["id": "t3"])

        a.request([("cmd", "create_mq"), ("mq_name", "MASTER"), ("mq_mode", "1"), ("access_token", "mt"), ("id", "ms0")])
        _ = try a.receive()
        a.request([("cmd", "create_mq"), ("mq_name", "SLAVE"), ("mq_mode", "1"), ("master_mq", "MASTER"), ("master_token", "mt"), ("id", "ms1")])
        expectReply(try a.receive(), status: 200, headers: ["id": "ms1"])
        a.request([("cmd", "produce"), ("mq", "MASTER"), ("token", "mt"), ("id", "ms2")], body: "copied")
        expectReply(try a.receive(), status: 200, headers: ["id": "ms2", "mq": "MASTER"])
        a.request([("cmd", "consume"), ("mq", "SLAVE"), ("id", "ms3")])
        expectReply(try a.receive(), status: 200, body: "copied", headers: ["id": "ms3", "rawid": "ms2", "mq": "MASTER", "token": "mt"])

        a.request([("cmd", "create_mq"), ("mq_name", "NOID"), ("mq_mode", "1"), ("id", "n0")])
        _ = try a.receive()
        a.request([("cmd", "produce"), ("mq", "NOID")], body: "anon")
        expectReply(try a.receive(), status: 200, timeBody: true, headers: ["id": nil, "mq": "NOID"])
        a.request([("cmd", "consume"), ("mq", "NOID"), ("id", "n2")])
        expectReply(try a.receive(), status: 200, body: "anon", headers: ["id": "n2", "rawid": nil])
        a.send("GET / HTTP/1.1\r\ncmd: test\r\nid: pl1\r\n\r\nGET / HTTP/1.1\r\ncmd: test\r\nid: pl2\r\n\r\n")
        expectReply(try a.receive(), status: 200, body: "OK", headers: ["id": "pl1"])
        expectReply(try a.receive(), status: 200, body: "OK", headers: ["id": "pl2"])

        // A consumer that disconnects while waiting takes nothing with it.
        let gone = try node.connect()
        gone.request([("cmd", "consume"), ("mq", "NOID"), ("id", "dc1")])
        try node.waitForParkedConsumes("NOID", count: 1)
        gone.close()
        // Its consumer is gone once only `a` is left.
        try node.waitForConsumers("NOID", count: 1)
        a.request([("cmd", "produce"), ("mq", "NOID"), ("id", "after-dc")], body: "after-disconnect")
        _ = try a.receive()
        a.request([("cmd", "query_mq"), ("mq", "NOID"), ("id", "n3")])
        let noid = try jsonBody(try a.receive())
        #expect(noid["unconsumedMsgCount"] as? Int == 1)
        #expect(noid["consumerCount"] as? Int == 1)
        a.request([("cmd", "consume"), ("mq", "NOID"), ("id", "n4")])
        expectReply(try a.receive(), status: 200, body: "after-disconnect", headers: ["rawid": "after-dc"])
    }

    @Test("probe4: URL forms and messages without ids")
    func probe4() throws {
        let node = try startMQNode()
        defer { node.cleanUp() }
        let a = try node.connect()
        a.request([("cmd", "create_mq"), ("mq_name", "U1"), ("mq_mode", "1")])
        expectReply(try a.receive(), status: 200, timeBody: true, headers: ["id": nil])
        a.send("GET /?cmd=produce&mq=U1 HTTP/1.1\r\ncontent-length: 8\r\n\r\nfrom-url")
        expectReply(try a.receive(), status: 200, timeBody: true, headers: ["mq": "U1", "id": nil])
        a.send("GET /?cmd=consume&mq=U1 HTTP/1.1\r\n\r\n")
        expectReply(try a.receive(), status: 200, body: "from-url", headers: ["mq": "U1", "id": nil, "rawid": nil])
        a.request([("cmd", "produce"), ("mq", "U1"), ("id", "P-ID")], body: "x")
        _ = try a.receive()
        a.request([("cmd", "consume"), ("mq", "U1")])
        expectReply(try a.receive(), status: 200, body: "x", headers: ["id": "P-ID", "rawid": "P-ID"])
        a.send("GET /U1?cmd=query_mq HTTP/1.1\r\n\r\n")
        let query = try jsonBody(try a.receive())
        #expect(query["consumerCount"] as? Int == 1)
        a.send("GET / HTTP/1.1\r\nCMD: test\r\nID: upper\r\n\r\n")
        expectReply(try a.receive(), status: 200, body: "OK", headers: ["id": "upper"])
        a.request([("cmd", "produce"), ("mq", "U1"), ("ack", "true"), ("id", "ackTrue")], body: "t")
        expectReply(try a.receive(), status: 200, headers: ["id": "ackTrue"])
        a.request([("cmd", "produce"), ("mq", "U1"), ("ack", "false"), ("id", "ackFalse")], body: "f")
        #expect(try a.receiveIfAny(timeout: 0.3) == nil)
        a.request([("cmd", "produce"), ("mq", "U1"), ("ack", "TRUE"), ("id", "ackUpper")], body: "t")
        expectReply(try a.receive(), status: 200, headers: ["id": "ackUpper"])
    }
}
