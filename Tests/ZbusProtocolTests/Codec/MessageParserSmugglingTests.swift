import NIOCore
import Testing
@testable import ZbusProtocol

/// The request smuggling shapes of RFC 9112 and what the parser does with each.
@Suite("MessageParser: smuggling shapes")
struct MessageParserSmugglingTests {
    /// Decodes everything in `text` with one parser; the messages before an error, and the error.
    func decode(_ text: String) -> (messages: [Message], error: MessageDecodingError?) {
        var parser = MessageParser()
        var buffer = ByteBuffer(string: text)
        var messages: [Message] = []
        do {
            while let message = try parser.next(&buffer) { messages.append(message) }
            return (messages, nil)
        } catch {
            return (messages, error)
        }
    }

    @Test("each shape is refused with a 400 whose text names it", arguments: [
        ("POST / HTTP/1.1\r\ncontent-length: 5\r\ncontent-length: 0\r\n\r\nGET / HTTP/1.1\r\n\r\n",
         MessageDecodingError.conflictingContentLength(first: "5", second: "0")),
        ("POST / HTTP/1.1\r\ncontent-length: 0\r\ncmd: x\r\nContent-Length: 12\r\n\r\n",
         .conflictingContentLength(first: "0", second: "12")),
        ("POST / HTTP/1.1\r\ncontent-length: 5, 5\r\n\r\nhello", .invalidContentLength("5, 5")),
        ("POST / HTTP/1.1\r\ncontent-length: 5,0\r\n\r\nhello", .invalidContentLength("5,0")),
        ("GET / HTTP/1.1\r\ncontent-length : 0\r\n\r\n", .whitespaceBeforeColon("content-length : 0")),
        ("GET / HTTP/1.1\r\ncmd\t: test\r\n\r\n", .whitespaceBeforeColon("cmd?: test")),
        ("GET / HTTP/1.1\r\nx: a\r\n b\r\n\r\n", .obsoleteLineFolding(" b")),
        ("GET / HTTP/1.1\r\nx: a\r\n\tcontent-length: 5\r\n\r\n", .obsoleteLineFolding("?content-length: 5")),
        ("GET / HTTP/1.1\r\n cmd: test\r\n\r\n", .obsoleteLineFolding(" cmd: test")),
        ("POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\nabc", .transferEncodingWithContentLength),
        ("POST / HTTP/1.1\r\ncontent-length: 3\r\ntransfer-encoding: identity\r\n\r\nabc", .transferEncodingWithContentLength),
        ("POST / HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\n", .unsupportedTransferEncoding("gzip")),
        ("GET / HTTP/1.1\ncmd: test\n\n", .bareLineFeed(offset: 14)),
        ("GET / HTTP/1.1\r\ncmd: test\n\r\n", .bareLineFeed(offset: 25)),
        ("GET / HTTP/1.1\r\ncmd: test\r\n\n", .bareLineFeed(offset: 27)),
        ("GET / HTTP/1.1\r\ncmd: te\rst\r\n\r\n", .bareCarriageReturn("cmd: te?st")),
        ("GET / HTTP/1.1\r\nc\rmd: test\r\n\r\n", .bareCarriageReturn("c?md: test")),
        ("GET / HTTP/1.1\rcmd: test\r\n\r\n", .bareCarriageReturn("GET / HTTP/1.1?cmd: test")),
        ("GET /\r HTTP/1.1\r\n\r\n", .bareCarriageReturn("GET /? HTTP/1.1")),
    ])
    func refused(input: String, expected: MessageDecodingError) {
        let result = decode(input)
        #expect(result.messages.isEmpty, "nothing of \(input.debugDescription) is delivered")
        #expect(result.error == expected, "\(input.debugDescription)")
        #expect(expected.status == 400)
        #expect(expected.description.hasPrefix("Bad format: "))
    }

    @Test("chunked alone keeps its 411; the error texts name the shape")
    func texts() {
        #expect(decode("POST / HTTP/1.1\r\ntransfer-encoding: gzip, chunked\r\n\r\n").error == .chunkedNotSupported)
        #expect(MessageDecodingError.conflictingContentLength(first: "1", second: "2").description.contains("conflicting content-length"))
        #expect(MessageDecodingError.bareLineFeed(offset: 3).description.contains("bare LF"))
        #expect(MessageDecodingError.bareCarriageReturn("x").description.contains("bare CR"))
        #expect(MessageDecodingError.obsoleteLineFolding("x").description.contains("obsolete line folding"))
        #expect(MessageDecodingError.whitespaceBeforeColon("x").description.contains("whitespace between header name and colon"))
        #expect(MessageDecodingError.transferEncodingWithContentLength.description.contains("transfer-encoding and content-length"))
    }

    @Test("identical repeated content-lengths frame the body once; the next message follows it")
    func identicalRepeats() throws {
        let result = decode("POST / HTTP/1.1\r\ncontent-length: 5\r\ncmd: a\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\ncmd: b\r\n\r\n")
        #expect(result.error == nil)
        #expect(result.messages.map(\.cmd) == ["a", "b"])
        #expect(result.messages.first?.bodyString == "hello")
    }

    @Test("what stays accepted: whitespace around values, blank lines (CRLF or LF) between messages, tabs in values")
    func stillAccepted() {
        let result = decode("\r\n\nGET / HTTP/1.1\r\ncmd:test\r\nx:  a\tb  \r\n\r\n\r\nGET / HTTP/1.1\r\ncmd: \t c \r\n\r\n")
        #expect(result.error == nil)
        #expect(result.messages.map(\.cmd) == ["test", "c"])
        #expect(result.messages.first?.headers["x"] == "a\tb")
    }

    @Test("a bare LF is refused as soon as it arrives, whatever byte the input is split at")
    func bareLineFeedAtOnce() throws {
        let input = Array("GET / HTTP/1.1\r\ncmd: test\nmq: x".utf8)
        let lineFeed = 25
        var parser = MessageParser()
        var buffer = ByteBuffer()
        for (offset, byte) in input.enumerated() {
            buffer.writeInteger(byte)
            do {
                #expect(try parser.next(&buffer) == nil)
                #expect(offset < lineFeed, "no error before the bare LF")
            } catch {
                #expect(error == .bareLineFeed(offset: lineFeed))
                #expect(offset == lineFeed, "refused at the LF, not later")
                return
            }
        }
        Issue.record("the bare LF was never refused")
    }

    @Test("a split anywhere in a CRLF stream still decodes; a split next to a refused shape still refuses it")
    func splits() {
        let good = "GET / HTTP/1.1\r\ncmd: a\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\nxyGET / HTTP/1.1\r\ncmd: b\r\n\r\n"
        let bad = "GET / HTTP/1.1\r\ncmd: a\r\ncontent-length : 2\r\n\r\nxy"
        for (text, shouldFail) in [(good, false), (bad, true)] {
            let bytes = Array(text.utf8)
            for split in 0...bytes.count {
                var parser = MessageParser()
                var buffer = ByteBuffer(bytes: bytes[0..<split])
                var cmds: [String?] = []
                var failed = false
                do {
                    while let message = try parser.next(&buffer) { cmds.append(message.cmd) }
                    buffer.writeBytes(bytes[split...])
                    while let message = try parser.next(&buffer) { cmds.append(message.cmd) }
                } catch {
                    failed = true
                }
                #expect(failed == shouldFail, "split at \(split)")
                if !shouldFail { #expect(cmds == ["a", "b"], "split at \(split)") }
            }
        }
    }
}
