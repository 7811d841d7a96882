import Foundation
import Testing
import ZbusKernel
import ZbusTestSupport

@Suite("Read backpressure", .serialized, .blockingIO(.heavy))
struct ReadBackpressureTests {
    @Test("a client that keeps sending and never reads its replies makes the node stop reading, not buffer them all; reading resumes once the client drains")
    func stopsReading() throws {
        let node = try startMQNode()
        defer { node.cleanUp() }
        let client = try node.connect()
        // The connection's session id, which `route` addresses: the node stamps it as `sender` on what it produces.
        client.request([("cmd", "create_mq"), ("mq_name", "Echo"), ("mq_mode", "4")])
        _ = try client.receive()
        client.request([("cmd", "produce"), ("mq", "Echo")], body: "x")
        _ = try client.receive()
        client.request([("cmd", "consume"), ("mq", "Echo")])
        let me = try #require(try client.receive().headers["sender"])

        // 64 KiB messages routed back to this very connection, sent as fast as the socket takes them and never read.
        // Once the replies fill the sockets' buffers, the node's outgoing buffer passes its limit and the node must
        // stop reading this connection: the client's sends then stall. A node that went on reading would hold every
        // reply in memory, and the client could send without end.
        let body = String(repeating: "r", count: 64 << 10)
        let frame = Array("POST / HTTP/1.1\r\ncmd: route\r\nrecver: \(me)\r\ncontent-length: \(body.utf8.count)\r\n\r\n\(body)".utf8)
        let cap = 512 << 20
        var written = 0
        var offset = 0
        while written < cap {
            guard let sent = client.sendWithoutWaiting(frame[offset...]) else { Issue.record("the node closed the connection"); return }
            if sent == 0 {
                // Stalled: the socket took nothing for a second.
                if !client.waitUntilWritable(timeout: 1) { break }
                continue
            }
            written += sent
            offset = (offset + sent) % frame.count
        }
        // Loopback socket buffers grow to a few MiB each way; the node's own outgoing buffer stops at 64 KiB.
        #expect(written < 64 << 20, "sent \(written >> 20) MiB without the node ever stopping to read")

        // The node keeps serving everyone else meanwhile.
        let other = try node.connect()
        other.request([("cmd", "query_mq"), ("mq", "Echo"), ("id", "q1")])
        let reply = try other.receive()
        #expect(reply.status == 200)
        #expect(reply.headers["id"] == "q1")

        // Once the client reads its replies, the node reads again: what is left of the last frame, then a request
        // whose reply comes after every routed message.
        var pending = (offset > 0 ? Array(frame[offset...]) : []) + Array("GET / HTTP/1.1\r\ncmd: query_mq\r\nmq: Echo\r\nid: last\r\n\r\n".utf8)
        let frames = (written + (offset > 0 ? frame.count - offset : 0)) / frame.count
        var routed = 0
        let deadline = Date().addingTimeInterval(60)
        while true {
            try #require(Date() < deadline, "the node did not resume reading: \(routed) of \(frames) replies")
            if !pending.isEmpty, let sent = client.sendWithoutWaiting(pending[...]), sent > 0 { pending.removeFirst(sent) }
            guard let message = try client.receiveIfAny(timeout: 0.05) else { continue }
            if message.headers["id"] == "last" { break }
            #expect(message.body?.readableBytes == body.utf8.count)
            routed += 1
        }
        #expect(pending.isEmpty)
        #expect(routed == frames)
        client.close(reset: true)
    }
}
