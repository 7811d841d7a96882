import NIOCore
import NIOHTTP1
import Testing
import ZbusKernel

@testable import ZbusProxyModule

/// The `http` adapter's response reader on its own: framing, what the caller gets, what is refused, and the same
/// result however the bytes are split.
@Suite("HTTP response parser")
struct HTTPResponseParserTests {
    /// Feeds `chunks` one after another (as reads would bring them), then the end of input when `close`; returns the
    /// responses read, or the error thrown.
    static func parse(_ chunks: [String], head: Bool = false, maxBody: Int = 1 << 20, close: Bool = false,
                      maxHead: Int = 64 << 10) -> Result<[HTTPResponseParser.Response], HTTPResponseError> {
        var parser = HTTPResponseParser(maxHead: maxHead, maxBody: maxBody)
        parser.requestWritten(method: head ? .HEAD : .GET)
        var responses: [HTTPResponseParser.Response] = []
        var unread = ByteBuffer()
        do throws(HTTPResponseError) {
            for chunk in chunks {
                unread.writeString(chunk)
                while let response = try parser.next(&unread) { responses.append(response) }
            }
            if close, let response = try parser.endOfInput() { responses.append(response) }
        } catch {
            return .failure(error)
        }
        return .success(responses)
    }

    static func one(_ text: String, head: Bool = false, close: Bool = false) throws -> HTTPResponseParser.Response {
        let responses = try parse([text], head: head, close: close).get()
        try #require(responses.count == 1, "\(responses.count) responses")
        return responses[0]
    }

    @Test("responses in a row: a line equal to the last response's at its place, a changed one, one more, one fewer, a long one, each read as sent")
    func linesRemembered() throws {
        let long = String(repeating: "v", count: 300)
        func response(_ lines: [String]) -> String {
            "HTTP/1.1 200 OK\r\n" + lines.map { $0 + "\r\n" }.joined() + "Content-Length: 2\r\n\r\nok"
        }
        let heads: [[String]] = [
            ["Content-Type: text/plain", "Date: Thu, 03 Dec 2026 08:00:00 GMT", "X-Long: \(long)"],
            ["Content-Type: text/plain", "Date: Thu, 03 Dec 2026 08:00:01 GMT", "X-Long: \(long)", "ETag: \"a\""],
            ["Content-Type: text/html", "Date: Thu, 03 Dec 2026 08:00:01 GMT"],
            ["content-type: text/html", "Date: Thu, 03 Dec 2026 08:00:01 GMT", "X-Long: \(long)x"],
        ]
        let responses = try Self.parse(heads.map(response)).get()
        try #require(responses.count == heads.count)
        for (response, lines) in zip(responses, heads) {
            let expected = lines.map { line -> String in
                let colon = line.firstIndex(of: ":")!
                return line[..<colon].lowercased() + "=" + line[line.index(colon, offsetBy: 2)...]
            }
            #expect(response.message.headers.pairs.map { "\($0.name)=\($0.value)" } == expected)
        }
    }

    @Test("a content-length response: status, headers lower-cased without the reserved ones, body; kept alive")
    func contentLength() throws {
        let response = try Self.one("HTTP/1.1 201 Created\r\nServer: legacy\r\nContent-Type: text/plain\r\nX-Trace: a b\r\n"
            + "Content-Length: 5\r\nConnection: keep-alive\r\nid: forged\r\nmq: forged\r\nX-Trace: last\r\nETag: \"e\"\r\nLAST-MODIFIED: then\r\n\r\nhello")
        #expect(response.message.status == 201)
        #expect(response.message.headers.pairs.map { "\($0.name)=\($0.value)" } == ["content-type=text/plain", "x-trace=a b, last", "etag=\"e\"", "last-modified=then"])
        #expect(response.message.bodyString == "hello")
        #expect(response.keepAlive)
    }

    @Test("a repeated header is joined with ', ' in order; set-cookie stays separate lines")
    func repeatedHeaders() throws {
        let response = try Self.one("HTTP/1.1 200 OK\r\nSet-Cookie: a=1; Expires=Wed, 09 Jun 2027 10:18:14 GMT\r\nVary: accept\r\n"
            + "SET-COOKIE: b=2\r\nvary: origin\r\nVary: cookie\r\nContent-Length: 0\r\n\r\n")
        #expect(response.message.headers.values("set-cookie") == ["a=1; Expires=Wed, 09 Jun 2027 10:18:14 GMT", "b=2"])
        #expect(response.message.headers.values("vary") == ["accept, origin, cookie"])
    }

    @Test("framing without a body: HEAD, 204, 304; interim 1xx responses are skipped")
    func bodiless() throws {
        #expect(try Self.one("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", head: true).message.body == nil)
        #expect(try Self.one("HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n").message.status == 204)
        #expect(try Self.one("HTTP/1.1 304 Not Modified\r\n\r\n").message.body == nil)
        let final = try Self.one("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        #expect(final.message.status == 200 && final.message.bodyString == "ok" && final.message.headers["link"] == nil)
    }

    @Test("chunked bodies: extensions, upper-case sizes, trailers, bare LF line ends; transfer-encoding wins over content-length")
    func chunked() throws {
        let response = try Self.one("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\nA\r\n, world!!!\r\n0\r\nX-Sum: 1\r\n\r\n")
        #expect(response.message.bodyString == "hello, world!!!")
        #expect(response.message.headers["x-sum"] == nil, "trailers are dropped")
        #expect(response.keepAlive)
        let bareLF = try Self.one("HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\n")
        #expect(bareLF.message.bodyString == "abc")
        let both = try Self.one("HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n")
        #expect(both.message.bodyString == "hi")
        #expect(!both.keepAlive, "a response with both framings is not trusted with another request")
    }

    @Test("bodies read until the close: no length, a transfer coding other than chunked, and HTTP/1.0 keep-alive rules")
    func untilClose() throws {
        let noLength = try Self.one("HTTP/1.1 200 OK\r\n\r\npart one, part two", close: true)
        #expect(noLength.message.bodyString == "part one, part two" && !noLength.keepAlive)
        #expect(try Self.parse(["HTTP/1.1 200 OK\r\n\r\nno end yet"]).get().isEmpty, "nothing before the close")
        let gzip = try Self.one("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzzz", close: true)
        #expect(gzip.message.bodyString == "zzz" && !gzip.keepAlive)
        #expect(try !Self.one("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx").keepAlive)
        #expect(try Self.one("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\nx").keepAlive)
        #expect(try !Self.one("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx").keepAlive)
    }

    @Test("the reserved headers: every listed name, in any case, and nothing else")
    func reservedHeaders() {
        for name in ReservedHeaders.names {
            #expect(ReservedHeaders.contains(name), "\(name)")
            #expect(ReservedHeaders.contains(name.uppercased()), "\(name)")
        }
        for name in ["content-type", "x-id", "ids", "m", "", "date", "etag", "set-cookie", "content-lengths", "transfer-encodin"] {
            #expect(!ReservedHeaders.contains(name), "\(name)")
        }
    }

    @Test("a request is written from the message: method and path headers, its other headers but reserved and unsafe ones, content-length")
    func requestEncoding() {
        var message = Message(method: "GET", uri: "/ignored")
        message.headers[HeaderName.cmd] = "produce"
        message.headers["x-empty"] = ""
        message.headers["x-split"] = "a\r\nInjected: yes"
        message.headers["x-keep"] = "kept value"
        message.headers["http-method"] = "put"
        message.headers["path"] = "/items/7"
        message.headers[HeaderName.sender] = "session"
        message.body = ByteBuffer(string: "{}")
        var bytes = ByteBuffer()
        let method = HTTPRequestEncoding(host: "127.0.0.1:8080", basePath: "/api").write(message, into: &bytes)
        #expect(method == .PUT)
        #expect(String(buffer: bytes) == "PUT /api/items/7 HTTP/1.1\r\nhost: 127.0.0.1:8080\r\nx-empty: \r\nx-keep: kept value\r\n"
            + "content-length: 2\r\n\r\n{}")
    }

    @Test("a path that could leave the target's base path, or that cannot be sent as it is, is refused with the reason; query strings pass")
    func pathRefusals() {
        let refused: [(String, String)] = [
            ("/../admin", "dot segment"),
            ("/api/..", "dot segment"),
            ("/./x", "dot segment"),
            ("/a/../../admin?x=1", "dot segment"),
            ("/%2e%2e/admin", "encoded '.', '/'"),
            ("/%2E%2E/admin", "encoded '.', '/'"),
            ("/a%2fb", "encoded '.', '/'"),
            ("/a%5C..%5Cadmin", "encoded '.', '/'"),
            ("..%2fadmin", "does not start with '/'"),
            ("../admin", "does not start with '/'"),
            ("admin", "does not start with '/'"),
            ("", "does not start with '/'"),
            ("http://evil/", "does not start with '/'"),
            ("//evil/x", "starts with '//'"),
            ("/a\\..\\admin", "'\\'"),
            ("/a b", "space"),
            ("/a#frag", "'#'"),
            ("/a?q=#x", "'#'"),
            ("/a\u{01}b", "control byte"),
            ("/a\tb", "control byte"),
            ("/a%zz", "'%' not followed by two hex digits"),
            ("/a%2", "'%' not followed by two hex digits"),
        ]
        for (path, reason) in refused {
            var message = Message()
            message.headers["path"] = path
            let refusal = HTTPRequestEncoding.refusal(of: message)
            #expect(refusal?.contains(reason) == true, "\(path.debugDescription): \(refusal ?? "accepted")")
        }
        let accepted = ["/", "/items/7", "/a.b/c..d/...", "/%41%20b", "/v1?q=../x&r=%2F&s=a\\b&t=%zz", "/a/.well-known/x", "/ä"]
        for path in accepted {
            var message = Message()
            message.headers["path"] = path
            #expect(HTTPRequestEncoding.refusal(of: message) == nil, "\(path.debugDescription)")
        }
        var smuggled = Message()
        smuggled.headers["http-method"] = "GET /admin HTTP/1.1"
        #expect(HTTPRequestEncoding.refusal(of: smuggled)?.contains("not an HTTP method token") == true)
        // A tunnel: the answer to a CONNECT turns the connection into one, which no reply message can carry.
        for method in ["CONNECT", "connect"] {
            var tunnel = Message()
            tunnel.headers["http-method"] = method
            #expect(HTTPRequestEncoding.refusal(of: tunnel)?.contains("CONNECT") == true, "\(method)")
        }
    }

    @Test("two responses in one read come out in order")
    func pipelined() throws {
        let responses = try Self.parse(["HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 404 Not Found\r\nContent-Length: 1\r\n\r\nb"]).get()
        #expect(responses.map { "\($0.message.status ?? 0):\($0.message.bodyString)" } == ["200:a", "404:b"])
    }

    @Test("what is refused, each with a reason that says what was wrong")
    func refusals() {
        let cases: [(String, String)] = [
            ("HTTP/2 200 OK\r\n\r\n", "status line"),
            ("HTTP/1.1 2x0 OK\r\n\r\n", "status line"),
            ("SSH-2.0-OpenSSH\r\n\r\n", "status line"),
            ("HTTP/1.1 200 OK\r\nNoColon\r\n\r\n", "no colon"),
            ("HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", "bad header name"),
            ("HTTP/1.1 200 OK\r\nName : x\r\n\r\n", "bad header name"),
            ("HTTP/1.1 200 OK\r\nA: b\r\n folded\r\n\r\n", "folded"),
            ("HTTP/1.1 200 OK\r\nA: b\u{01}c\r\n\r\n", "control byte"),
            ("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "conflicting content-length"),
            ("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "bad content-length"),
            ("HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\n", "bad content-length"),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad size line"),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", "longer than its size"),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n", "too long"),
            ("HTTP/1.1 101 Switching Protocols\r\n\r\n", "switch protocols"),
        ]
        for (text, reason) in cases {
            guard case .failure(let error) = Self.parse([text]) else {
                Issue.record("accepted: \(text.debugDescription)")
                continue
            }
            #expect(error.description.contains(reason), "\(text.debugDescription): \(error)")
        }
    }

    @Test("limits: head size, header count, body size by content-length, by chunks and until the close")
    func limits() {
        let bigHead = "HTTP/1.1 200 OK\r\nX: " + String(repeating: "a", count: 2000) + "\r\n\r\n"
        #expect(Self.parse([bigHead], maxHead: 1024).failureText?.contains("larger than 1024 bytes") == true)
        #expect(Self.parse([String(bigHead.prefix(1500))], maxHead: 1024).failureText?.contains("larger than 1024 bytes") == true,
                "refused before the head ends")
        let manyHeaders = "HTTP/1.1 200 OK\r\n" + (0..<300).map { "X-\($0): v\r\n" }.joined() + "\r\n"
        #expect(Self.parse([manyHeaders]).failureText?.contains("more than 256 headers") == true)
        #expect(Self.parse(["HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n"], maxBody: 10).failureText?.contains("max_reply (10 bytes)") == true)
        #expect(Self.parse(["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n5\r\n"], maxBody: 10)
            .failureText?.contains("max_reply") == true)
        #expect(Self.parse(["HTTP/1.1 200 OK\r\n\r\n", "123456", "78901"], maxBody: 10).failureText?.contains("max_reply") == true)
    }

    @Test("a connection closed mid-response is an error, not a response; closed between responses is nothing")
    func closedMidResponse() throws {
        #expect(Self.parse(["HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel"], close: true).failureText?.contains("middle of its response") == true)
        #expect(Self.parse(["HTTP/1.1 200 OK\r\nCont"], close: true).failureText?.contains("middle") == true)
        #expect(try Self.parse(["HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"], close: true).get().count == 1)
    }

    @Test("a connection closed after a head's first bytes, or after interim responses, is closed mid-response too")
    func closedAfterFirstBytes() throws {
        // Not "closed before answering", which the adapter takes for a kept connection gone stale and sends the
        // request again on: the service did answer something.
        for text in ["H", "HTT", "\r\nHT", "HTTP/1.1 100 Continue\r\n\r\n"] {
            #expect(Self.parse([text], close: true).failureText?.contains("middle of its response") == true, "\(text.debugDescription)")
        }
        #expect(try Self.parse(["HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx\r\n"], close: true).get().count == 1,
                "a blank line after a response is not the start of another")
    }

    @Test("trailers and interim responses are bounded as a head is: a service cannot send them without end")
    func trailerAndInterimLimits() {
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n"
        #expect(Self.parse([chunked + String(repeating: "X-T: v\r\n", count: 200)], maxHead: 1024)
            .failureText?.contains("larger than 1024 bytes") == true)
        #expect(Self.parse([chunked + (0..<300).map { "X-\($0): v\r\n" }.joined()]).failureText?.contains("more than 256") == true)
        #expect(Self.parse([String(repeating: "HTTP/1.1 100 Continue\r\n\r\n", count: 100)], maxHead: 1024)
            .failureText?.contains("1024 bytes") == true)
        // Within the limits, both still read.
        let response = try? Self.parse([chunked + "X-T: v\r\n\r\n"], maxHead: 1024).get()
        #expect(response?.count == 1 && response?.first?.message.bodyString == "x")
        let final = try? Self.parse([String(repeating: "HTTP/1.1 100 Continue\r\n\r\n", count: 10) + "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"],
                                    maxHead: 1024).get()
        #expect(final?.count == 1 && final?.first?.message.status == 200)
    }

    @Test("random responses split at random places read the same as in one piece")
    func randomSplits() throws {
        var random = SplitMix(seed: 0x5EED)
        for round in 0..<400 {
            let (text, expected) = Self.randomResponse(&random)
            var chunks: [String] = []
            var rest = Substring(text)
            while !rest.isEmpty {
                let length = Int(random.next() % 12) + 1
                chunks.append(String(rest.prefix(length)))
                rest = rest.dropFirst(length)
            }
            let responses = try Self.parse(chunks).get()
            try #require(responses.count == 1, "round \(round): \(text.debugDescription)")
            let message = responses[0].message
            #expect(message.status == expected.status, "round \(round)")
            #expect(message.bodyString == expected.body, "round \(round)")
            #expect(message.headers.pairs.map { "\($0.name)=\($0.value)" } == expected.headers, "round \(round): \(text.debugDescription)")
        }
    }

    /// A response with random headers (random case, some reserved), framed by content-length or chunks; and what the
    /// caller should get.
    static func randomResponse(_ random: inout SplitMix) -> (String, (status: Int, body: String, headers: [String])) {
        let status = [200, 201, 404, 500, 503][Int(random.next() % 5)]
        var text = "HTTP/1.1 \(status) Whatever\r\n"
        var headers: [String] = []
        for index in 0..<Int(random.next() % 8) {
            let reserved = random.next() % 4 == 0
            let name = reserved ? ["Server", "ID", "mq", "Keep-Alive", "Host"][Int(random.next() % 5)] : "X-Field-\(index)"
            let cased = String(name.map { random.next() % 2 == 0 ? Character($0.uppercased()) : Character($0.lowercased()) })
            let value = String(repeating: "v\(index)", count: Int(random.next() % 20) + 1)
            text += "\(cased):\(random.next() % 2 == 0 ? " " : "")\(value)\r\n"
            if !reserved { headers.append("\(name.lowercased())=\(value)") }
        }
        let body = String(repeating: "b", count: Int(random.next() % 300))
        if random.next() % 2 == 0 {
            text += "Content-Length: \(body.utf8.count)\r\n\r\n" + body
        } else {
            text += "Transfer-Encoding: chunked\r\n\r\n"
            var rest = Substring(body)
            while !rest.isEmpty {
                let length = Int(random.next() % 64) + 1
                let part = rest.prefix(length)
                text += String(part.utf8.count, radix: 16) + "\r\n" + part + "\r\n"
                rest = rest.dropFirst(length)
            }
            text += "0\r\n\r\n"
        }
        return (text, (status, body, headers))
    }
}

/// A small seeded generator (SplitMix64), so a failing round can be replayed.
struct SplitMix: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) {
        state = seed
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var value = state
        value = (value ^ (value >> 30)) &* 0xBF58_476D_1CE4_E5B9
        value = (value ^ (value >> 27)) &* 0x94D0_49BB_1331_11EB
        return value ^ (value >> 31)
    }
}

extension Result where Failure == HTTPResponseError {
    fileprivate var failureText: String? {
        if case .failure(let error) = self { return error.description }
        return nil
    }
}
