import NIOCore
import NIOEmbedded
import Testing
@testable import ZbusProtocol

/// Decodes everything in `text` with one parser and returns the messages.
private func decodeAll(_ text: String, limits: MessageLimits = .default) throws -> [Message] {
    var parser = MessageParser(limits: limits)
    var buffer = ByteBuffer(string: text)
    var messages: [Message] = []
    while let message = try parser.next(&buffer) { messages.append(message) }
    return messages
}

@Suite("MessageParser")
struct MessageParserTests {
    @Test("header-name bytes: exactly RFC 9110's token characters are accepted")
    func tokenBytes() {
        let specials = Set("!#$%&'*+-.^_`|~".utf8)
        for byte in 0...255 {
            let value = UInt8(byte)
            let isAlphanumeric = (0x30...0x39).contains(value) || (0x41...0x5A).contains(value) || (0x61...0x7A).contains(value)
            #expect(ASCIIBytes.isTokenByte(value) == (isAlphanumeric || specials.contains(value)), "byte \(byte)")
        }
    }

    @Test("a request line with zbus headers and a body")
    func request() throws {
        let messages = try decodeAll("POST /x HTTP/1.1\r\ncmd: produce\r\nmq: Q1\r\nid: p1\r\ncontent-length: 11\r\n\r\nhello world")
        #expect(messages.count == 1)
        let message = messages[0]
        #expect(message.startLine == .request(method: "POST", uri: "/x"))
        #expect(message.cmd == "produce")
        #expect(message.mq == "Q1")
        #expect(message.id == "p1")
        #expect(message.bodyString == "hello world")
        #expect(message.headers["content-length"] == nil, "framing headers are not data")
        #expect(!message.closeRequested)
    }

    @Test("header names are lower-cased, values trimmed, and the last of a repeated name wins")
    func headerCase() throws {
        let message = try #require(try decodeAll("GET / HTTP/1.1\r\nCmd:   test  \r\nID: a\r\nX-Custom: Abc\r\nid: b\r\n\r\n").first)
        #expect(message.cmd == "test")
        #expect(message.id == "b")
        #expect(message.headers["x-custom"] == "Abc")
        #expect(message.headers["X-CUSTOM"] == "Abc")
        #expect(message.headers.pairs.map(\.name) == ["cmd", "id", "x-custom"])
    }

    @Test("the protocol's and HTTP's frequent names decode in any case to their own lower-case name; near misses too")
    func knownNames() throws {
        let names = ["MQ", "Id", "cmd", "ACK", "RawId", "token", "Sender", "SERVER", "timeout", "Remote-Addr", "Path",
                     "HTTP-Method", "HOST", "Accept", "User-Agent", "content-type", "Accept-Encoding",
                     "mqx", "i", "cm", "acks", "rawi", "tokens", "sendr", "servers", "timeouts", "remote-adr",
                     "pat", "http-methods", "hosts", "accepts", "user-agents", "Content-Types", "accept-encodinG2"]
        var text = "GET / HTTP/1.1\r\n"
        for (index, name) in names.enumerated() { text += "\(name): v\(index)\r\n" }
        text += "\r\n"
        let message = try #require(try decodeAll(text).first)
        #expect(message.headers.pairs.map(\.name) == names.map { $0.lowercased() })
        #expect(message.headers.pairs.map(\.value) == names.indices.map { "v\($0)" })
    }

    @Test("names with no slot: a repeat is found whatever lengths came before it, names of one length stay apart")
    func repeatsAmongOtherNames() throws {
        // `host`, `date` and `x-aa` share a length; `accept` and `x-long` too; the 67-byte name has 3's length modulo 64.
        let long = "x-" + String(repeating: "l", count: 65)
        let text = "GET / HTTP/1.1\r\nHost: a\r\nDate: d\r\nX-Aa: 1\r\nAccept: */*\r\nabc: 3\r\n\(long): 67\r\n"
            + "X-Long: l\r\nhost: b\r\nx-aa: 2\r\nABC: 4\r\nPath: /x\r\npath: /y\r\nHttp-Method: put\r\n\r\n"
        let message = try #require(try decodeAll(text).first)
        #expect(message.headers.pairs.map(\.name) == ["host", "date", "x-aa", "accept", "abc", long, "x-long", "path", "http-method"])
        #expect(message.headers.pairs.map(\.value) == ["b", "d", "2", "*/*", "4", "67", "l", "/y", "put"])
        #expect(message.httpPath == "/y" && message.headers["path"] == "/y")
        #expect(message.httpMethod == "put")
    }

    @Test("many repeated headers still keep only the last value")
    func manyHeaders() throws {
        var text = "GET / HTTP/1.1\r\n"
        for index in 0..<200 { text += "h\(index % 50): \(index)\r\n" }
        text += "\r\n"
        let message = try #require(try decodeAll(text).first)
        #expect(message.headers.count == 50)
        #expect(message.headers["h0"] == "150")
        #expect(message.headers["h49"] == "199")
    }

    @Test("repeated set-cookie lines are kept apart, in order, and written back as separate lines; other repeats keep the last")
    func setCookieLines() throws {
        for filler in [0, 20] {  // a short block (searched) and a long one (the parser's name index)
            var text = "HTTP/1.1 200 OK\r\n" + (0..<filler).map { "x-\($0): \($0)\r\n" }.joined()
            text += "Set-Cookie: a=1; Path=/\r\nx-once: first\r\nset-cookie: b=2; Expires=Wed, 09 Jun 2027 10:18:14 GMT\r\n"
            text += "x-once: last\r\nSET-COOKIE: c=3\r\n\r\n"
            let message = try #require(try decodeAll(text).first)
            #expect(message.headers.values("set-cookie") == ["a=1; Path=/", "b=2; Expires=Wed, 09 Jun 2027 10:18:14 GMT", "c=3"], "\(filler)")
            #expect(message.headers["set-cookie"] == "a=1; Path=/", "the subscript reads the first")
            #expect(message.headers.values("x-once") == ["last"])
            let again = try #require(try decodeAll(String(buffer: MessageSerializer.serialize(message))).first)
            #expect(again.headers.values("Set-Cookie") == message.headers.values("set-cookie"))
            #expect(again.headers == message.headers)
        }
        var built = Headers()
        built.append(lowercased: "set-cookie", "a=1")
        built.append(lowercased: "set-cookie", "b=2")
        var other = Headers()
        other.append(lowercased: "set-cookie", "a=1")
        other.append(lowercased: "set-cookie", "c=3")
        #expect(built != other)
        #expect(built == built)
    }

    /// Every indexed header's value as read through the index, next to what a search of the block finds.
    private static func indexedReads(_ headers: Headers) -> [(String, String?, String?)] {
        let all: [Headers.Indexed] = [.cmd, .mq, .id, .ack, .rawId, .token, .timeout, .sender, .server, .remoteAddr, .key,
                                      .keyGroup, .topic, .recver]
        return all.map { header in
            (header.name, headers.value(indexed: header), headers.pairs.last(where: { $0.name == header.name })?.value)
        }
    }

    @Test("reads of the protocol's headers through the parser's index agree with a search, before and after changes",
          arguments: [
              "GET / HTTP/1.1\r\ncmd: produce\r\nmq: Q\r\nid: 1\r\n\r\n",
              "GET / HTTP/1.1\r\nCMD: consume\r\nMq: Q\r\nTOPIC: a,b\r\ntimeout: 30\r\ntoken: t\r\nack: 0\r\n\r\n",
              "GET / HTTP/1.1\r\nkey: k1\r\nKey_Group: g\r\nrecver: r\r\nrawid: p\r\nkey: k2\r\nmq: A\r\nmq: B\r\n\r\n",
              "HTTP/1.1 200 OK\r\nsender: s\r\nserver: n\r\nremote-addr: a\r\nid: 9\r\n\r\n",
              "GET / HTTP/1.1\r\n" + (0..<20).map { "x-\($0): \($0)\r\n" }.joined() + "mq: late\r\nid: i\r\nmq: later\r\n\r\n",
              "GET / HTTP/1.1\r\n" + (0..<300).map { "x-\($0): \($0)\r\n" }.joined() + "cmd: far\r\ntopic: t\r\n\r\n",
          ])
    func indexedHeaders(wire: String) throws {
        for stamp in [nil, InboundStamp(sender: "me", server: "node:1", remoteAddress: "127.0.0.1:9")] {
            var input = ByteBuffer(string: wire)
            var parser = MessageParser(stamp: stamp)
            var message = try #require(try parser.next(&input))
            for (name, indexed, searched) in Self.indexedReads(message.headers) { #expect(indexed == searched, "\(name)") }
            #expect(message.mq == message.headers["mq"])
            // Replacing a value keeps the index; adding or removing headers drops it, and reads stay right.
            message.id = "replaced"
            message.headers["x-new"] = "1"
            message.headers.remove("mq")
            message.topic = "t2"
            for (name, indexed, searched) in Self.indexedReads(message.headers) { #expect(indexed == searched, "\(name) after changes") }
            #expect(message.id == "replaced")
            #expect(message.mq == nil)
        }
    }

    @Test("a status-line message may carry cmd (routed replies)")
    func statusLineWithCmd() throws {
        let message = try #require(try decodeAll("HTTP/1.1 500 Internal Server Error\r\ncmd: route\r\nrecver: abc\r\ncontent-length: 2\r\n\r\nno").first)
        #expect(message.status == 500)
        #expect(message.cmd == "route")
        #expect(message.bodyString == "no")
        let lower = try #require(try decodeAll("http/1.1 200\r\ncmd: test\r\n\r\n").first)
        #expect(lower.status == 200)
    }

    @Test("without content-length there is no body and the next bytes are the next message")
    func missingContentLength() throws {
        let messages = try decodeAll("POST / HTTP/1.1\r\ncmd: a\r\n\r\nGET / HTTP/1.1\r\ncmd: b\r\n\r\n")
        #expect(messages.map(\.cmd) == ["a", "b"])
        #expect(messages[0].body == nil)
    }

    @Test("pipelined messages in one buffer all decode in order, blank lines between them tolerated")
    func pipelined() throws {
        var text = ""
        for index in 0..<50 { text += "GET / HTTP/1.1\r\ncmd: test\r\nid: \(index)\r\ncontent-length: 1\r\n\r\nx\r\n" }
        let messages = try decodeAll(text)
        #expect(messages.map(\.id) == (0..<50).map { String($0) })
    }

    @Test("HTTP/1.0 closes unless keep-alive; HTTP/1.1 keeps alive unless close")
    func connectionSemantics() throws {
        #expect(try decodeAll("GET / HTTP/1.0\r\n\r\n")[0].closeRequested)
        #expect(try !decodeAll("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")[0].closeRequested)
        #expect(try !decodeAll("GET / HTTP/1.1\r\n\r\n")[0].closeRequested)
        #expect(try decodeAll("GET / HTTP/1.1\r\nconnection: close\r\n\r\n")[0].closeRequested)
        #expect(try !decodeAll("GET /\r\n\r\n")[0].closeRequested, "a bare request line is read as HTTP/1.1")
    }

    @Test("header block at the limit passes, one byte over gets 431")
    func headerLimit() throws {
        let limits = MessageLimits(maxHeaderBytes: 1024, maxBodyBytes: 1024)
        let prefix = "GET / HTTP/1.1\r\nx: "
        let filler = String(repeating: "a", count: 1024 - prefix.utf8.count - 4)
        let exact = prefix + filler + "\r\n\r\n"
        #expect(exact.utf8.count == 1024)
        #expect(try decodeAll(exact, limits: limits).count == 1)
        #expect(throws: MessageDecodingError.headerTooLarge(limit: 1024)) {
            _ = try decodeAll(prefix + filler + "a\r\n\r\n", limits: limits)
        }
        // An endless header line is refused as soon as the limit is reached, without waiting for its end.
        #expect(throws: MessageDecodingError.headerTooLarge(limit: 1024)) {
            _ = try decodeAll(prefix + String(repeating: "b", count: 5000), limits: limits)
        }
        #expect(MessageDecodingError.headerTooLarge(limit: 1).status == 431)
    }

    @Test("body at the limit passes, larger gets 413 before any body byte arrives")
    func bodyLimit() throws {
        let limits = MessageLimits(maxHeaderBytes: 1024, maxBodyBytes: 10)
        #expect(try decodeAll("GET / HTTP/1.1\r\ncontent-length: 10\r\n\r\n0123456789", limits: limits).count == 1)
        #expect(throws: MessageDecodingError.bodyTooLarge(declared: "11", limit: 10)) {
            _ = try decodeAll("GET / HTTP/1.1\r\ncontent-length: 11\r\n\r\n", limits: limits)
        }
        #expect(throws: MessageDecodingError.bodyTooLarge(declared: "1000000000000", limit: 10)) {
            _ = try decodeAll("GET / HTTP/1.1\r\ncontent-length: 1000000000000\r\n\r\n", limits: limits)
        }
        #expect(throws: MessageDecodingError.self) {
            _ = try decodeAll("GET / HTTP/1.1\r\ncontent-length: 99999999999999999999999999\r\n\r\n", limits: limits)
        }
        #expect(MessageDecodingError.bodyTooLarge(declared: "", limit: 1).status == 413)
    }

    @Test("start lines read whole (the common ones) and token by token (the rest) decode alike", arguments: [
        ("GET / HTTP/1.1", StartLine.request(method: "GET", uri: "/")),
        ("POST / HTTP/1.1", .request(method: "POST", uri: "/")),
        ("GET  /  HTTP/1.1", .request(method: "GET", uri: "/")),
        ("get / HTTP/1.1", .request(method: "get", uri: "/")),
        ("POST /x HTTP/1.1", .request(method: "POST", uri: "/x")),
        ("GET / http/1.1", .request(method: "GET", uri: "/")),
        ("HTTP/1.1 200 OK", .status(code: 200, reason: nil)),
        ("HTTP/1.1 204", .status(code: 204, reason: nil)),
        ("HTTP/1.1 404 MQ(x) Not Found", .status(code: 404, reason: nil)),
        ("HTTP/1.1 100\tContinue", .status(code: 100, reason: nil)),
        ("HTTP/1.0 200 OK", .status(code: 200, reason: nil)),
        ("http/1.1 500 x", .status(code: 500, reason: nil)),
    ])
    func startLines(line: String, expected: StartLine) throws {
        let messages = try decodeAll(line + "\r\n\r\n")
        #expect(messages.count == 1)
        #expect(messages.first?.startLine == expected)
        #expect(messages.first?.closeRequested == false)
    }

    @Test("malformed input gets a precise 4xx", arguments: [
        ("HTTP/1.1 099 Low\r\n\r\n", 400),
        ("HTTP/1.1 20 OK\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\ncontent-length: abc\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\ncontent-length: -1\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nno colon here\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\n: empty name\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nbad name: x\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nx: a\u{01}b\r\n\r\n", 400),
        ("G(T / HTTP/1.1\r\n\r\n", 400),
        ("GET / FTP/1.0\r\n\r\n", 400),
        ("GET / HTTP/1.1 extra\r\n\r\n", 400),
        ("HTTP/1.1 2000 OK\r\n\r\n", 400),
        ("HTTP/1.1 abc OK\r\n\r\n", 400),
        ("   \r\n\r\n", 400),
        ("POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 411),
    ])
    func malformed(input: String, status: Int) throws {
        do {
            _ = try decodeAll(input)
            Issue.record("expected an error for \(input.debugDescription)")
        } catch let error as MessageDecodingError {
            #expect(error.status == status, "\(error)")
            #expect(error.description.hasPrefix("Bad format: "))
        }
    }

    @Test("expect: 100-continue is reported once while the body is outstanding")
    func expectContinue() throws {
        var parser = MessageParser()
        var buffer = ByteBuffer(string: "POST / HTTP/1.1\r\nExpect: 100-continue\r\ncontent-length: 3\r\n\r\n")
        #expect(try parser.next(&buffer) == nil)
        let first = parser.takeContinueRequest()
        let second = parser.takeContinueRequest()
        #expect(first)
        #expect(!second)
        buffer.writeString("abc")
        #expect(try parser.next(&buffer)?.bodyString == "abc")
    }
}

@Suite("MessageSerializer")
struct MessageSerializerTests {
    @Test("serialize then parse gives the same message")
    func roundTrip() throws {
        var message = Message(status: 404, headers: Headers([("mq", "NoSuch"), ("id", "x4")]), body: ByteBuffer(string: "MQ(NoSuch) Not Found"))
        var buffer = MessageSerializer.serialize(message)
        #expect(String(buffer: buffer) == "HTTP/1.1 404 Not Found\r\nmq: NoSuch\r\nid: x4\r\ncontent-length: 20\r\nconnection: Keep-Alive\r\n\r\nMQ(NoSuch) Not Found")
        var parser = MessageParser()
        let decoded = try #require(try parser.next(&buffer))
        #expect(decoded.status == 404)
        #expect(decoded.headers == message.headers)
        #expect(decoded.body == message.body)
        message.closeRequested = true
        #expect(String(buffer: MessageSerializer.serialize(message)).contains("connection: close\r\n"))
    }

    @Test("decimal writer", arguments: [0, 7, 10, 99, 100, 12345, 1_000_000_007, .max, -1, -9, -10, -12345, .min] as [Int64])
    func decimal(value: Int64) {
        var buffer = ByteBuffer()
        MessageSerializer.writeDecimal(value, into: &buffer)
        #expect(String(buffer: buffer) == String(value))
    }
}

@Suite("MessageDecoder in a channel")
struct MessageDecoderChannelTests {
    static let stream =
        "GET / HTTP/1.1\r\ncmd: test\r\nid: 1\r\n\r\n"
        + "POST /q HTTP/1.1\r\nCmd: produce\r\nMQ: Q\r\nContent-Length: 5\r\n\r\nhello"
        + "HTTP/1.1 200 OK\r\ncmd: route\r\nrecver: r\r\ncontent-length: 0\r\n\r\n"
        + "GET /?cmd=test HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"

    private static func decode(chunks: [ByteBuffer]) throws -> [Message] {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(MessageDecoder()))
        var out: [Message] = []
        for chunk in chunks {
            try channel.writeInbound(chunk)
            while let message = try channel.readInbound(as: Message.self) { out.append(message) }
        }
        _ = try channel.finish()
        return out
    }

    @Test("the same four messages come out whatever byte the input is split at")
    func splitAtEveryByte() throws {
        let bytes = ByteBuffer(string: Self.stream)
        let whole = try Self.decode(chunks: [bytes])
        #expect(whole.map(\.cmd) == ["test", "produce", "route", nil])
        for split in 1..<bytes.readableBytes {
            let parts = [bytes.getSlice(at: 0, length: split)!, bytes.getSlice(at: split, length: bytes.readableBytes - split)!]
            let messages = try Self.decode(chunks: parts)
            #expect(messages.count == 4, "split at \(split)")
            #expect(messages[1].bodyString == "hello", "split at \(split)")
            #expect(messages.map(\.cmd) == whole.map(\.cmd), "split at \(split)")
        }
        // And one byte at a time.
        let single = (0..<bytes.readableBytes).map { bytes.getSlice(at: $0, length: 1)! }
        let messages = try Self.decode(chunks: single)
        #expect(messages.map(\.id) == whole.map(\.id))
        #expect(messages[1].bodyString == "hello")
    }

    @Test("a framing error surfaces as MessageDecodingError from the channel")
    func errorSurfaces() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(MessageDecoder(limits: MessageLimits(maxHeaderBytes: 1024, maxBodyBytes: 8))))
        #expect(throws: MessageDecodingError.self) {
            try channel.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\ncontent-length: 9\r\n\r\n"))
        }
        _ = try? channel.finish()
    }

    @Test("the encoder writes zbus framing")
    func encoder() throws {
        let channel = EmbeddedChannel(handler: MessageEncoder())
        let message = Message(status: 200, headers: Headers([("id", "x2")]), body: ByteBuffer(string: "OK"))
        try channel.writeOutbound(message)
        let bytes = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(String(buffer: bytes) == "HTTP/1.1 200 OK\r\nid: x2\r\ncontent-length: 2\r\nconnection: Keep-Alive\r\n\r\nOK")
        // Large bodies leave as a second buffer, uncopied.
        let big = ByteBuffer(repeating: 0x61, count: 100_000)
        try channel.writeOutbound(Message(status: 200, body: big))
        let head = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(String(buffer: head).hasSuffix("content-length: 100000\r\nconnection: Keep-Alive\r\n\r\n"))
        #expect(try channel.readOutbound(as: ByteBuffer.self) == big)
        _ = try channel.finish()
    }
}

@Suite("MessageParser stamping")
struct MessageParserStampTests {
    @Test("a stamp replaces what the peer sent as sender, server and remote-addr")
    func stamp() throws {
        var parser = MessageParser(stamp: InboundStamp(sender: "s-1", server: "127.0.0.1:1", remoteAddress: "127.0.0.1:2"))
        var buffer = ByteBuffer(string: "GET / HTTP/1.1\r\ncmd: test\r\nSender: forged\r\nserver: forged\r\nREMOTE-ADDR: forged\r\nid: 7\r\n\r\n")
        let message = try #require(try parser.next(&buffer))
        #expect(message.sender == "s-1")
        #expect(message.server == "127.0.0.1:1")
        #expect(message.remoteAddr == "127.0.0.1:2")
        #expect(message.headers.count == 5)
        #expect(message.id == "7")
    }

    @Test("a tracker report keeps the peer's server (it names the reporting node), or gets none; anything else gets the node's")
    func trackerReportKeepsServer() throws {
        var parser = MessageParser(stamp: InboundStamp(sender: "s-1", server: "127.0.0.1:1", remoteAddress: "127.0.0.1:2"))
        for cmd in ["server_join", "server_leave", "entry_update", "entry_remove"] {
            var buffer = ByteBuffer(string: "GET / HTTP/1.1\r\nserver: 10.0.0.5:15555\r\ncmd: \(cmd)\r\nsender: forged\r\n\r\n")
            let message = try #require(try parser.next(&buffer))
            #expect(message.server == "10.0.0.5:15555", "\(cmd)")
            #expect(message.sender == "s-1")
        }
        for head in ["cmd: produce\r\nserver: forged", "server: forged", "cmd: server_join\r\ncmd: produce"] {
            var buffer = ByteBuffer(string: "GET / HTTP/1.1\r\n\(head)\r\n\r\n")
            let message = try #require(try parser.next(&buffer))
            #expect(message.server == "127.0.0.1:1", "\(head)")
        }
        // A report without a `server` names no reporter: empty, for the tracker to refuse (the node's own address
        // there listed the tracker itself as a server).
        var buffer = ByteBuffer(string: "GET / HTTP/1.1\r\ncmd: server_join\r\n\r\n")
        #expect(try #require(try parser.next(&buffer)).server == "")
    }
}
