import Foundation
import Testing
import ZbusKernel
import ZbusTestSupport

/// Request smuggling shapes (RFC 9112) sent as raw bytes to the real binary: each is refused with a 400 that names
/// what was wrong, the connection is closed, no request hidden behind it runs, and the node keeps serving others.
@Suite("Framing hardening", .serialized, .blockingIO(.heavy))
struct FramingHardeningTests {
    /// A request that leaves a trace if it ever runs: it creates the MQ `name`.
    static func createMQ(_ name: String) -> String {
        "GET / HTTP/1.1\r\ncmd: create_mq\r\nmq_name: \(name)\r\nmq_mode: 1\r\n\r\n"
    }

    /// Sends `bytes` on a fresh connection and returns everything the node answered until it closed.
    static func answer(to bytes: String, node: ZbusProcess) throws -> (text: String, closed: Bool) {
        let client = try node.connect()
        client.send(bytes)
        let reply = try client.readUntilClose(timeout: 10)
        return (String(decoding: reply.bytes, as: UTF8.self), reply.closed)
    }

    /// Whether the node knows the MQ `name`, asked on a fresh, well-formed connection (which also shows it serves).
    static func mqExists(_ name: String, node: ZbusProcess) throws -> Bool {
        let client = try node.connect()
        client.request([("cmd", "query_mq"), ("mq", name)])
        let status = try client.receive().status
        #expect(status == 200 || status == 404, "query_mq answered \(String(describing: status))")
        return status == 200
    }

    @Test("a request hidden behind conflicting content-lengths (or any framing shape) never runs")
    func smuggledRequestNeverRuns() throws {
        let node = try startMQNode()
        defer { node.cleanUp() }
        let hidden = Self.createMQ("Smuggled")
        let length = hidden.utf8.count
        let shapes: [(String, String)] = [
            // Today the last content-length won: 0, so the "body" ran as a second request.
            ("two content-lengths", "POST / HTTP/1.1\r\ncmd: test\r\ncontent-length: \(length)\r\ncontent-length: 0\r\n\r\n" + hidden),
            ("transfer-encoding with content-length",
             "POST / HTTP/1.1\r\ncmd: test\r\ntransfer-encoding: gzip\r\ncontent-length: 0\r\n\r\n" + hidden),
            ("space before the colon", "POST / HTTP/1.1\r\ncmd: test\r\ncontent-length : 0\r\n\r\n" + hidden),
            ("folded line", "POST / HTTP/1.1\r\ncmd: test\r\nx-a: 1\r\n content-length: 0\r\n\r\n" + hidden),
        ]
        for (shape, bytes) in shapes {
            let reply = try Self.answer(to: bytes, node: node)
            #expect(reply.text.hasPrefix("HTTP/1.1 400 "), "\(shape): \(reply.text)")
            #expect(reply.closed, "\(shape): the connection must close after a framing error")
            // Exactly one reply: nothing after the refusal.
            #expect(reply.text.components(separatedBy: "HTTP/1.1 ").count == 2, "\(shape): \(reply.text)")
            #expect(try !Self.mqExists("Smuggled", node: node), "\(shape): the hidden request ran")
        }
        // Control: the same hidden request, sent openly, does run (so the check above can fail).
        let open = try node.connect()
        open.send(hidden)
        #expect(try open.receive().status == 200)
        #expect(try Self.mqExists("Smuggled", node: node))
    }

    @Test("each smuggling shape gets a 400 naming it and a close; bare LF framing is answered, not left hanging",
          arguments: [
              ("conflicting content-length", "POST / HTTP/1.1\r\ncmd: test\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd",
               "conflicting content-length"),
              ("content-length list", "POST / HTTP/1.1\r\ncmd: test\r\ncontent-length: 3, 3\r\n\r\nabc", "content-length '3, 3'"),
              ("whitespace before colon", "GET / HTTP/1.1\r\ncmd : test\r\n\r\n", "whitespace between header name and colon"),
              ("tab before colon", "GET / HTTP/1.1\r\ncmd\t: test\r\n\r\n", "whitespace between header name and colon"),
              ("obs-fold", "GET / HTTP/1.1\r\ncmd: test\r\nx-a: 1\r\n\tcontinued\r\n\r\n", "obsolete line folding"),
              ("whitespace before the first header", "GET / HTTP/1.1\r\n cmd: test\r\n\r\n", "obsolete line folding"),
              ("transfer-encoding and content-length", "POST / HTTP/1.1\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\nabc",
               "transfer-encoding and content-length"),
              ("unknown transfer-encoding", "POST / HTTP/1.1\r\ncmd: test\r\ntransfer-encoding: gzip\r\n\r\n", "transfer-encoding 'gzip'"),
              ("bare LF", "GET / HTTP/1.1\ncmd: test\n\n", "bare LF"),
              ("bare LF ending a CRLF block", "GET / HTTP/1.1\r\ncmd: test\r\n\n", "bare LF"),
              ("bare CR in a value", "GET / HTTP/1.1\r\ncmd: te\rst\r\n\r\n", "bare CR"),
              ("bare CR as a line end", "GET / HTTP/1.1\rcmd: test\r\n\r\n", "bare CR"),
          ])
    func eachShapeIsRefused(shape: String, bytes: String, named: String) throws {
        let node = try startMQNode()
        defer { node.cleanUp() }
        let reply = try Self.answer(to: bytes, node: node)
        #expect(reply.text.hasPrefix("HTTP/1.1 400 "), "\(shape): \(reply.text.debugDescription)")
        #expect(reply.text.contains(named), "\(shape): the reply must name what was wrong: \(reply.text.debugDescription)")
        #expect(reply.closed, "\(shape): the connection must close")
        // The node still serves a well-formed client.
        let other = try node.connect()
        other.request([("cmd", "test")])
        #expect(try other.receive().status == 200)
    }

    @Test("identical repeated content-lengths are accepted (RFC 9110 8.6) and frame the body once")
    func identicalContentLengths() throws {
        let node = try startMQNode()
        defer { node.cleanUp() }
        let client = try node.connect()
        client.send("GET / HTTP/1.1\r\ncmd: create_mq\r\nmq_name: Twice\r\nmq_mode: 1\r\n\r\n")
        #expect(try client.receive().status == 200)
        client.send("POST / HTTP/1.1\r\ncmd: produce\r\nmq: Twice\r\ncontent-length: 5\r\nContent-Length: 5\r\n\r\nhello"
                    + "GET / HTTP/1.1\r\ncmd: test\r\n\r\n")
        #expect(try client.receive().status == 200)
        #expect(try client.receive().status == 200)
        client.request([("cmd", "consume"), ("mq", "Twice")])
        #expect(try client.receive().bodyString == "hello")
    }
}
