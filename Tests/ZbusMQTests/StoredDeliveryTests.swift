import NIOCore
import Testing
@testable import ZbusProtocol
@testable import ZbusMQ

@Suite("StoredDelivery")
struct StoredDeliveryTests {
    @Test("acceptedAt: kept by a delivery and by edits of the headers, not part of the header block's equality, nil when unset")
    func acceptedAtTravels() {
        var request = Message(method: "POST", uri: "/")
        request.cmd = "produce"
        request.id = "p-1"
        #expect(request.acceptedAt == nil)
        let accepted = NIODeadline.uptimeNanoseconds(123_456_789)
        request.acceptedAt = accepted
        request.headers.set(lowercased: "x-extra", "1")
        #expect(request.acceptedAt == accepted)
        let delivered = request.delivered(requestId: "c-1", close: false)
        #expect(delivered.acceptedAt == accepted)
        #expect(delivered.rawId == "p-1" && delivered.id == "c-1")
        // Presented as zbus 6 consumers see it (a loop consumer's `.rebuild` form), it is still the same message.
        var presented = delivered
        presented.headers = delivered.headers.forConsumer()
        #expect(presented.acceptedAt == accepted && presented.id == "p-1")
        var unstamped = request
        unstamped.acceptedAt = nil
        #expect(unstamped.acceptedAt == nil)
        #expect(unstamped.headers == request.headers)
    }

    /// Records as the MQ module stores them: a produce as the node parsed it (stamped), serialized without `cmd`/`ack`.
    static let produced: [String] = [
        "POST / HTTP/1.1\r\ncmd: produce\r\nmq: Q\r\nid: 0-17\r\ncontent-length: 11\r\n\r\nhello world",
        "POST /x?y=1 HTTP/1.1\r\nCmd: produce\r\nMQ: Q\r\nack: 0\r\nX-Custom:  spaced value \r\ncontent-length: 0\r\n\r\n",
        "GET / HTTP/1.1\r\ncmd: produce\r\nmq: Q\r\nrawid: earlier\r\nid: i2\r\ntopic: a,b\r\ncontent-length: 3\r\n\r\nabc",
        "HTTP/1.1 202 Accepted\r\ncmd: produce\r\nmq: Q\r\nid: s1\r\ncontent-length: 2\r\n\r\nok",
        "HTTP/1.1 599 Custom Reason Here\r\nmq: Q\r\ncontent-length: 1\r\n\r\nz",
        "POST / HTTP/1.1\r\nmq: Q\r\nexpect: 100-continue\r\nencoding: UTF-8\r\ncontent-length: 4\r\n\r\n\u{00e9}\u{00e9}",
        "POST / HTTP/1.1\r\nmq: Q\r\nid: \(String(repeating: "long-id-", count: 20))\r\ncontent-length: 5\r\n\r\n12345",
    ]

    private static func record(_ wire: String) throws -> ByteBuffer {
        var input = ByteBuffer(string: wire)
        var parser = MessageParser(stamp: InboundStamp(sender: "0b0a8e4c-5f7e-4c55-8a43-2b7a3a0d1e11", server: "10.0.0.1:15555",
                                                       remoteAddress: "127.0.0.1:40000"))
        let message = try #require(try parser.next(&input))
        return MessageSerializer.serialize(message, omittingNodeHeaders: true)
    }

    private static func general(_ record: ByteBuffer, requestId: String?, close: Bool) -> String {
        var out = ByteBuffer()
        MessageSerializer.write(StoredDelivery.message(record: record, requestId: requestId, close: close), into: &out)
        return String(buffer: out)
    }

    @Test("the fast path writes exactly what parsing, delivered(requestId:close:) and the serializer write",
          arguments: 0..<7)
    func sameBytes(index: Int) throws {
        let record = try Self.record(Self.produced[index])
        for requestId in [nil, "c-1", String(repeating: "r", count: 40)] {
            for close in [false, true] {
                var fast = ByteBuffer()
                #expect(StoredDelivery.writeFast(record: record, requestId: requestId, close: close, into: &fast))
                #expect(String(buffer: fast) == Self.general(record, requestId: requestId, close: close),
                        "record \(index), requestId \(requestId ?? "nil"), close \(close)")
            }
        }
    }

    @Test("delivered(requestId:close:) builds, in order, the headers that removing and setting them one by one gives",
          arguments: 0..<7)
    func deliveredMatchesEdits(index: Int) throws {
        var input = ByteBuffer(string: Self.produced[index])
        var parser = MessageParser()
        let produced = try #require(try parser.next(&input))
        for requestId in [nil, "c-1"] {
            // The reference: the message copied, then edited header by header.
            var expected = produced
            expected.headers.removeValue(lowercased: HeaderName.cmd)
            expected.headers.removeValue(lowercased: HeaderName.ack)
            if case .request = expected.startLine { expected.startLine = .status(code: 200, reason: nil) }
            if let producerId = expected.id { expected.rawId = producerId }
            if let requestId { expected.id = requestId }
            let delivered = produced.delivered(requestId: requestId, close: true)
            #expect(delivered.headers.pairs.map { "\($0.name): \($0.value)" } == expected.headers.pairs.map { "\($0.name): \($0.value)" },
                    "message \(index), requestId \(requestId ?? "nil")")
            #expect(delivered.startLine == expected.startLine)
            #expect(delivered.body == expected.body)
            #expect(delivered.closeRequested)
            #expect(delivered.id == (requestId ?? produced.id))
            // The slots moved with their headers: every indexed read gives what a search gives.
            #expect(delivered.headers.isIndexed == produced.headers.isIndexed)
            var raw = 0
            while let header = Headers.Indexed(rawValue: raw) {
                #expect(delivered.headers.value(indexed: header) == delivered.headers.value(lowercased: header.name),
                        "message \(index), \(header.name)")
                raw += 1
            }
        }
    }

    @Test("a delivered produce: 200, rawid = the producer's id, id = the consume's id, body intact")
    func deliveredShape() throws {
        var out = ByteBuffer()
        #expect(StoredDelivery.writeFast(record: try Self.record(Self.produced[0]), requestId: "c-9", close: false, into: &out))
        var parser = MessageParser()
        let message = try #require(try parser.next(&out))
        #expect(message.status == 200)
        #expect(message.id == "c-9")
        #expect(message.rawId == "0-17")
        #expect(message.mq == "Q")
        #expect(message.cmd == nil)
        #expect(message.bodyString == "hello world")
        #expect(message.sender == "0b0a8e4c-5f7e-4c55-8a43-2b7a3a0d1e11")
    }

    @Test("hand-written records (repeated id and rawid lines, no space after the colon, upper-case names) are written whole and parse back")
    func unusualRecords() throws {
        let records = [
            "POST / HTTP/1.1\r\nid: a\r\nID:b\r\nrawid: r1\r\nRawId:r2\r\nX-Y:z\r\ncontent-length: 2\r\n\r\nhi",
            "GET /q HTTP/1.1\r\nrawid:early\r\nmq:Q\r\nconnection: close\r\ntransfer-encoding: x\r\nack:1\r\n\r\n",
            "HTTP/1.1 204 No Content\r\nk:\r\n\r\n",
        ]
        for text in records {
            for requestId in [nil, "c-1", String(repeating: "q", count: 70)] {
                for close in [false, true] {
                    var fast = ByteBuffer()
                    #expect(StoredDelivery.writeFast(record: ByteBuffer(string: text), requestId: requestId, close: close, into: &fast))
                    var parser = MessageParser()
                    let message = try #require(try parser.next(&fast), "\(text.debugDescription) did not parse back")
                    #expect(fast.readableBytes == 0)
                    #expect(message.cmd == nil && message.headers["ack"] == nil)
                    if let requestId { #expect(message.id == requestId) }
                    #expect(message.closeRequested == close)
                }
            }
        }
    }

    @Test("records not in the serializer's form are declined, and write(record:) falls back to parsing them")
    func declined() throws {
        let odd = [
            "POST / HTTP/1.1\r\nmq: Q\r\ncontent-length: 9\r\n\r\nabc",  // content-length does not match the body
            "POST / HTTP/1.1\r\nmq: Q\r\ncontent-length: 3",  // no end of head
            "garbage without any structure",
        ]
        for text in odd {
            var fast = ByteBuffer()
            #expect(!StoredDelivery.writeFast(record: ByteBuffer(string: text), requestId: "c", close: false, into: &fast))
            #expect(fast.readableBytes == 0)
            var any = ByteBuffer()
            StoredDelivery.write(record: ByteBuffer(string: text), requestId: "c", close: false, into: &any)
            #expect(String(buffer: any) == Self.general(ByteBuffer(string: text), requestId: "c", close: false))
        }
        // An unparseable record becomes a 500 naming the problem, carrying the consume's id.
        let unreadable = StoredDelivery.message(record: ByteBuffer(string: "garbage without any structure"), requestId: "c", close: false)
        #expect(unreadable.status == 500)
        #expect(unreadable.id == "c")
        #expect(unreadable.bodyString.hasPrefix("stored message unreadable"))
    }

    @Test("a record with as many header lines as a plan notes takes the fast path; one more line falls back, same bytes")
    func lineLimit() throws {
        // The record's lines besides the custom ones: mq, id, the three stamps, content-length and connection.
        for customLines in [48 - 7, 48 - 7 + 1, 200] {
            var wire = "POST / HTTP/1.1\r\nmq: Q\r\nid: p-1\r\n"
            for index in 0..<customLines { wire += "x-h\(index): v\(index)\r\n" }
            wire += "content-length: 2\r\n\r\nok"
            let record = try Self.record(wire)
            var fast = ByteBuffer()
            let planned = StoredDelivery.writeFast(record: record, requestId: "c-9", close: false, into: &fast)
            #expect(planned == (customLines + 7 <= 48), "\(customLines) custom lines")
            var any = ByteBuffer()
            StoredDelivery.write(record: record, requestId: "c-9", close: false, into: &any)
            #expect(String(buffer: any) == Self.general(record, requestId: "c-9", close: false))
            if planned { #expect(String(buffer: fast) == String(buffer: any)) }
        }
    }
}
