import NIOCore
import NIOHTTP1
import ZbusKernel

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads a legacy HTTP/1.x service's responses straight into the ``Message`` an `http` adapter routes back: the
/// status, the headers but the reserved ones (``ReservedHeaders``) with lower-case names, the body.
///
/// It exists because the reply is the larger half of a bus call: read through NIO's generic HTTP decoder, each
/// response was parsed into `HTTPHeaders`, copied into a message with a `lowercased()` and a set lookup per header, and
/// passed between three handlers as typed parts (about 40% of the node's instructions per call). Here each header is
/// looked at once, in place, and what the caller gets is built directly.
///
/// What it accepts is what RFC 9112 asks of a client: a status line `HTTP/1.x NNN [reason]`; lines ending in CRLF or
/// a bare LF; the body framed by the request method and the status (a response to `HEAD`, a 204 or a 304 has none;
/// 1xx interim responses are skipped), then by `transfer-encoding` (chunked when chunked is the last coding, else
/// until the connection closes; it wins over a `content-length`, and the connection is not reused then), then by
/// `content-length` (repeats must agree), else until the connection closes. Chunk extensions and trailers are read and
/// dropped. What it refuses, with a ``HTTPResponseError`` that says what was wrong (the call gets 502 and the connection
/// is closed): any other status line, a header line without a colon or with a name that is not a token, control bytes
/// in a value, a folded header line (RFC 9112 5.2 lets a gateway answer 502), a head over `maxHead` bytes or with over
/// `maxHeaders` headers (trailers, and interim responses, likewise), a malformed chunk, a body over `maxBody` bytes
/// (``HTTPReplyTooLarge``), and `101 Switching Protocols`.
///
/// A pure state machine over a `ByteBuffer`: feed it what arrived; it consumes whole responses and body bytes as they
/// come, and leaves a partial head or chunk line in place (bounded by `maxHead`), so it can be tested and fuzzed
/// without a channel.
struct HTTPResponseParser {
    /// The largest status line plus header block taken; also the most bytes of interim (1xx) responses before a final
    /// one, and of a chunked body's trailer section.
    let maxHead: Int
    /// The largest body taken (the adapter's `max_reply`).
    let maxBody: Int
    /// The most header lines taken in one response (and trailer lines after a chunked body).
    let maxHeaders: Int

    /// One complete response.
    struct Response {
        /// The reply: its status, the service's headers but the reserved ones, the body (`nil` when empty).
        var message: Message
        /// Whether the connection may carry the next request.
        var keepAlive: Bool
    }

    private enum State {
        case head
        case fixedBody(remaining: Int)
        case chunkSize
        case chunkData(remaining: Int)
        case chunkDataEnd
        case trailers
        case untilClose
    }

    private var state = State.head
    /// Bytes of the readable region already searched for the end of a head (or a trailer block, or a chunk line).
    private var scanned = 0
    /// The response whose head was read, while its body arrives.
    private var message: Message?
    private var body: ByteBuffer?
    private var bodyBytes = 0
    private var keepAlive = true
    /// The request written last was a `HEAD`: its response has no body whatever its headers say.
    private var bodilessRequest = false
    /// Bytes of the next response have come (part of a head, or interim responses), its final head not yet: a close
    /// now cuts a response short. (`scanned` cannot tell: it stays 0 while a partial head is under 4 bytes.)
    private var headBegun = false
    /// The forwarded header lines of the last response, as received, with the name and value strings made of them.
    /// A service sends mostly the same lines every time (`server`, `content-type`, cache headers), so a line equal to
    /// the one at the same place last time takes its strings instead of decoding and allocating them again.
    private var lastLines: [ForwardedLine] = []

    private struct ForwardedLine {
        var raw: [UInt8]
        var name: String
        var value: String
    }

    /// The most forwarded lines remembered, and the longest remembered: what a connection keeps stays under 8 KiB
    /// whatever the service sends (the usual line is far shorter; a long one is rare and not worth keeping).
    private static let rememberedLines = 32
    private static let longestRememberedLine = 256
    /// Bytes and lines of the response's interim heads so far, or of its trailer section: neither may go on without
    /// end, whatever the call's timeout.
    private var sectionBytes = 0
    private var sectionLines = 0

    init(maxHead: Int = 64 << 10, maxBody: Int, maxHeaders: Int = 256) {
        self.maxHead = maxHead
        self.maxBody = maxBody
        self.maxHeaders = maxHeaders
    }

    /// Says how the response to the request being written is framed: a `HEAD` request's response has no body.
    mutating func requestWritten(method: HTTPMethod) {
        bodilessRequest = method == .HEAD
    }

    /// Parses the next complete response out of `buffer`, consuming what it reads.
    ///
    /// - Returns: the response, or `nil` when more input is needed.
    /// - Throws: ``HTTPResponseError`` or ``HTTPReplyTooLarge``; the connection is unusable then.
    mutating func next(_ buffer: inout ByteBuffer) throws(HTTPResponseError) -> Response? {
        while true {
            switch state {
            case .head:
                guard try readHead(&buffer) else { return nil }
            case .fixedBody(let remaining):
                let left = takeBody(&buffer, upTo: remaining)
                guard left == 0 else {
                    state = .fixedBody(remaining: left)
                    return nil
                }
                return complete()
            case .chunkSize:
                guard let line = try readLine(&buffer, what: "chunk size line") else { return nil }
                let size = try Self.chunkSize(line)
                if size == 0 {
                    state = .trailers
                } else {
                    guard size <= maxBody - bodyBytes else { throw .tooLarge(limit: maxBody) }
                    state = .chunkData(remaining: size)
                }
            case .chunkData(let remaining):
                let left = takeBody(&buffer, upTo: remaining)
                guard left == 0 else {
                    state = .chunkData(remaining: left)
                    return nil
                }
                state = .chunkDataEnd
            case .chunkDataEnd:
                guard let line = try readLine(&buffer, what: "chunk") else { return nil }
                guard line.readableBytes == 0 else { throw .malformedChunk("chunk data longer than its size") }
                state = .chunkSize
            case .trailers:
                // Trailer fields are read and dropped (they are not part of the reply a caller gets).
                guard let line = try readLine(&buffer, what: "trailer section") else { return nil }
                if line.readableBytes == 0 { return complete() }
                sectionBytes += line.readableBytes + 2
                sectionLines += 1
                guard sectionBytes <= maxHead else { throw .headTooLarge(limit: maxHead) }
                guard sectionLines <= maxHeaders else { throw .tooManyHeaders(limit: maxHeaders) }
            case .untilClose:
                let taken = buffer.readableBytes
                guard taken > 0 else { return nil }
                guard taken <= maxBody - bodyBytes else { throw .tooLarge(limit: maxBody) }
                appendBody(buffer.readSlice(length: taken)!)
                return nil
            }
        }
    }

    /// The connection closed: the response read until the close, if that is how it was framed.
    ///
    /// - Throws: ``HTTPResponseError/closedMidResponse`` when a response had begun and was not complete.
    mutating func endOfInput() throws(HTTPResponseError) -> Response? {
        switch state {
        case .untilClose:
            return complete()
        case .head where !headBegun:
            return nil
        default:
            throw .closedMidResponse
        }
    }

    // MARK: - Head

    /// Reads a head if a whole one is there; `false` when more input is needed. An interim (1xx) response is read
    /// and dropped, leaving the state at `.head`.
    private mutating func readHead(_ buffer: inout ByteBuffer) throws(HTTPResponseError) -> Bool {
        if scanned == 0 {
            // Blank lines before a status line (a CRLF some servers send after a body) are skipped.
            while let byte = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self),
                  byte == UInt8(ascii: "\r") || byte == UInt8(ascii: "\n") {
                buffer.moveReaderIndex(forwardBy: 1)
            }
        }
        if buffer.readableBytes > 0 { headBegun = true }
        guard let headLength = Self.blankLineEnd(in: buffer, from: scanned) else {
            guard buffer.readableBytes < maxHead else { throw .headTooLarge(limit: maxHead) }
            scanned = max(0, buffer.readableBytes - 3)
            return false
        }
        guard headLength <= maxHead else { throw .headTooLarge(limit: maxHead) }
        scanned = 0
        let parsed = try buffer.withUnsafeReadableBytes { (bytes) throws(HTTPResponseError) -> ParsedHead in
            try parseHead(UnsafeRawBufferPointer(rebasing: bytes[0..<headLength]))
        }
        buffer.moveReaderIndex(forwardBy: headLength)
        let code = parsed.status
        if code < 200 {
            guard code != 101 else { throw .unexpectedStatus(code, "the adapter does not switch protocols") }
            sectionBytes += headLength
            guard sectionBytes <= maxHead else { throw .interimTooLarge(limit: maxHead) }
            return true  // an interim response: the final one follows
        }
        headBegun = false
        sectionBytes = 0
        sectionLines = 0
        message = parsed.message
        keepAlive = parsed.keepAlive
        body = nil
        bodyBytes = 0
        if bodilessRequest || code == 204 || code == 304 {
            state = .fixedBody(remaining: 0)
        } else if let coding = parsed.transferEncoding {
            // RFC 9112 6.3: a transfer coding wins over a content-length; a sender that sent both may have meant the
            // other, so the connection is not trusted with another request.
            if parsed.contentLength != nil { keepAlive = false }
            if Self.lastCodingIsChunked(coding) {
                state = .chunkSize
            } else {
                keepAlive = false
                state = .untilClose
            }
        } else if let length = parsed.contentLength {
            guard length <= maxBody else { throw .tooLarge(limit: maxBody) }
            state = .fixedBody(remaining: length)
        } else {
            keepAlive = false
            state = .untilClose
        }
        return true
    }

    private struct ParsedHead {
        var message: Message
        var status: Int
        var keepAlive: Bool
        var contentLength: Int?
        var transferEncoding: String?
    }

    private mutating func parseHead(_ head: UnsafeRawBufferPointer) throws(HTTPResponseError) -> ParsedHead {
        var lines = Lines(head)
        guard let statusLine = lines.next() else { throw .malformedStatusLine("") }
        let (status, isHTTP10) = try Self.parseStatusLine(statusLine)
        var message = Message(status: status)
        // Room for the route's headers and the node's stamps too, so the headers grow only once.
        message.headers.reserveCapacity(12)
        var keepAlive = !isHTTP10
        var contentLength: Int?
        var transferEncoding: String?
        var count = 0
        var forwarded = 0
        var forwardedLengths: UInt64 = 0
        while let line = lines.next() {
            if line.isEmpty { break }
            count += 1
            guard count <= maxHeaders else { throw .tooManyHeaders(limit: maxHeaders) }
            guard line[0] != UInt8(ascii: " ") && line[0] != UInt8(ascii: "\t") else {
                throw .malformedHeader("folded header line (obsolete line folding): \(Self.printable(line))")
            }
            guard let base = line.baseAddress, let hit = memchr(base, Int32(UInt8(ascii: ":")), line.count) else {
                throw .malformedHeader("no colon: \(Self.printable(line))")
            }
            let colon = base.distance(to: UnsafeRawPointer(hit))
            let name = UnsafeRawBufferPointer(rebasing: line[0..<colon])
            guard !name.isEmpty, name.allSatisfy(ASCIIBytes.isTokenByte) else {
                throw .malformedHeader("bad header name: \(Self.printable(line))")
            }
            let value = Self.trim(UnsafeRawBufferPointer(rebasing: line[(colon + 1)...]))
            if ASCIIBytes.hasControlBytes(value) {
                throw .malformedHeader("control byte in the value: \(Self.printable(line))")
            }
            switch ReservedHeaders.role(name) {
            case .contentLength:
                let length = try Self.parseContentLength(value)
                if let contentLength, contentLength != length {
                    throw .malformedHeader("conflicting content-length values \(contentLength) and \(length)")
                }
                contentLength = length
            case .transferEncoding:
                let coding = String(decoding: value, as: UTF8.self)
                transferEncoding = transferEncoding.map { $0 + ", " + coding } ?? coding
            case .connection:
                Self.forEachToken(value) { token in
                    if ASCIIBytes.equalsIgnoringCase(token, "close") { keepAlive = false }
                    if isHTTP10 && ASCIIBytes.equalsIgnoringCase(token, "keep-alive") { keepAlive = true }
                }
            case .reserved:
                break
            case .forwarded:
                let (lowerName, text) = forwardedStrings(line: line, name: name, value: value, at: forwarded)
                forwarded += 1
                // A repeated name is joined into one line with ", " (RFC 9110 5.3), in order, as a message carries
                // one value per name; but set-cookie, whose values may hold commas, stays separate lines. A name of
                // a length no earlier forwarded name had (modulo 64) repeats none: no search for it.
                let lengthBit: UInt64 = 1 << UInt64(name.count & 63)
                defer { forwardedLengths |= lengthBit }
                if forwardedLengths & lengthBit != 0, let previous = message.headers.value(lowercased: lowerName),
                   !Headers.keepsRepeats(lowerName) {
                    message.headers.set(lowercased: lowerName, previous + ", " + text)
                } else {
                    message.headers.append(lowercased: lowerName, text)
                }
            }
        }
        return ParsedHead(message: message, status: status, keepAlive: keepAlive, contentLength: contentLength,
                          transferEncoding: transferEncoding)
    }

    /// The lower-case name and the value of the `index`th forwarded line of this response: those of the line at the
    /// same place in the last response when the bytes are the same, else made and remembered.
    private mutating func forwardedStrings(line: UnsafeRawBufferPointer, name: UnsafeRawBufferPointer,
                                           value: UnsafeRawBufferPointer, at index: Int) -> (String, String) {
        if index < lastLines.count {
            let same = lastLines[index].raw.withUnsafeBytes { remembered in
                remembered.count == line.count && (line.isEmpty || memcmp(remembered.baseAddress!, line.baseAddress!, line.count) == 0)
            }
            if same { return (lastLines[index].name, lastLines[index].value) }
        }
        let strings = (ASCIIBytes.lowercasedName(name), String(decoding: value, as: UTF8.self))
        guard index < Self.rememberedLines, line.count <= Self.longestRememberedLine else { return strings }
        let remembered = ForwardedLine(raw: Array(line), name: strings.0, value: strings.1)
        if index < lastLines.count { lastLines[index] = remembered } else if index == lastLines.count { lastLines.append(remembered) }
        return strings
    }

    // MARK: - Body

    /// Takes up to `count` body bytes from `buffer`; returns how many are still to come.
    private mutating func takeBody(_ buffer: inout ByteBuffer, upTo count: Int) -> Int {
        let taken = min(count, buffer.readableBytes)
        if taken > 0 { appendBody(buffer.readSlice(length: taken)!) }
        return count - taken
    }

    private mutating func appendBody(_ part: ByteBuffer) {
        bodyBytes += part.readableBytes
        if body == nil {
            body = part
        } else {
            var part = part
            body!.writeBuffer(&part)
        }
    }

    private mutating func complete() -> Response? {
        guard var message = message.take() else { return nil }
        if let body, body.readableBytes > 0 { message.body = body }
        body = nil
        bodyBytes = 0
        sectionBytes = 0
        sectionLines = 0
        state = .head
        return Response(message: message, keepAlive: keepAlive)
    }

    /// Reads one line (chunk size, chunk end, trailer), without its line end; `nil` when it has not all come.
    private mutating func readLine(_ buffer: inout ByteBuffer, what: String) throws(HTTPResponseError) -> ByteBuffer? {
        let view = buffer.readableBytesView
        guard let lineFeed = view[(view.startIndex + scanned)...].firstIndex(of: UInt8(ascii: "\n")) else {
            guard buffer.readableBytes < maxHead else { throw .headTooLarge(limit: maxHead) }
            scanned = buffer.readableBytes
            return nil
        }
        scanned = 0
        let length = lineFeed - view.startIndex
        var line = buffer.readSlice(length: length)!
        buffer.moveReaderIndex(forwardBy: 1)
        if line.readableBytes > 0, line.getInteger(at: line.writerIndex - 1, as: UInt8.self) == UInt8(ascii: "\r") {
            line.moveWriterIndex(to: line.writerIndex - 1)
        }
        return line
    }

    /// The size of a chunk from its line (`HEX [; extensions]`).
    private static func chunkSize(_ line: ByteBuffer) throws(HTTPResponseError) -> Int {
        var size = 0
        var digits = 0
        for byte in line.readableBytesView {
            let digit: Int
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = Int(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = Int(byte - UInt8(ascii: "a")) + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = Int(byte - UInt8(ascii: "A")) + 10
            case UInt8(ascii: ";"), UInt8(ascii: " "), UInt8(ascii: "\t"):
                guard digits > 0 else { throw .malformedChunk("no size: \(printable(line))") }
                return size
            default:
                throw .malformedChunk("bad size line: \(printable(line))")
            }
            digits += 1
            guard digits <= 15 else { throw .malformedChunk("chunk size too long: \(printable(line))") }
            size = size * 16 + digit
        }
        guard digits > 0 else { throw .malformedChunk("empty size line") }
        return size
    }

    // MARK: - Lines and bytes

    /// Offset just past the blank line that ends a head, searching from `start`; `nil` when it has not come.
    private static func blankLineEnd(in buffer: ByteBuffer, from start: Int) -> Int? {
        buffer.withUnsafeReadableBytes { bytes -> Int? in
            guard let base = bytes.baseAddress else { return nil }
            var position = start
            while position < bytes.count {
                guard let hit = memchr(base + position, Int32(UInt8(ascii: "\n")), bytes.count - position) else { return nil }
                let index = base.distance(to: UnsafeRawPointer(hit))
                if index + 1 < bytes.count, bytes[index + 1] == UInt8(ascii: "\n") { return index + 2 }
                if index + 2 < bytes.count, bytes[index + 1] == UInt8(ascii: "\r"), bytes[index + 2] == UInt8(ascii: "\n") {
                    return index + 3
                }
                position = index + 1
            }
            return nil
        }
    }

    /// The lines of a head, each without its CRLF or LF.
    private struct Lines {
        let bytes: UnsafeRawBufferPointer
        var position = 0

        init(_ bytes: UnsafeRawBufferPointer) {
            self.bytes = bytes
        }

        mutating func next() -> UnsafeRawBufferPointer? {
            guard position < bytes.count, let base = bytes.baseAddress else { return nil }
            let end: Int
            if let hit = memchr(base + position, Int32(UInt8(ascii: "\n")), bytes.count - position) {
                end = base.distance(to: UnsafeRawPointer(hit))
            } else {
                end = bytes.count
            }
            var lineEnd = end
            if lineEnd > position, bytes[lineEnd - 1] == UInt8(ascii: "\r") { lineEnd -= 1 }
            defer { position = end + 1 }
            return UnsafeRawBufferPointer(rebasing: bytes[position..<lineEnd])
        }
    }

    /// `HTTP/1.x NNN[ reason]`: the status and whether the version is 1.0.
    private static func parseStatusLine(_ line: UnsafeRawBufferPointer) throws(HTTPResponseError) -> (Int, Bool) {
        // The line nearly every answer starts with, recognised whole (the general reading below costs a few hundred
        // instructions a call).
        if line.count == 15, memcmp(line.baseAddress!, okLine.utf8Start, 15) == 0 { return (200, false) }
        let prefix = "HTTP/1."
        guard line.count >= 12, line.starts(with: prefix.utf8),
              line[7] == UInt8(ascii: "0") || line[7] == UInt8(ascii: "1"),
              line[8] == UInt8(ascii: " ")
        else { throw .malformedStatusLine(printable(line)) }
        var status = 0
        for offset in 9..<12 {
            let byte = line[offset]
            guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") else { throw .malformedStatusLine(printable(line)) }
            status = status * 10 + Int(byte - UInt8(ascii: "0"))
        }
        guard status >= 100, line.count == 12 || line[12] == UInt8(ascii: " ") else {
            throw .malformedStatusLine(printable(line))
        }
        for byte in line[12...] where (byte < 0x20 && byte != 0x09) || byte == 0x7F {
            throw .malformedStatusLine(printable(line))
        }
        return (status, line[7] == UInt8(ascii: "0"))
    }

    private static let okLine: StaticString = "HTTP/1.1 200 OK"

    private static func parseContentLength(_ value: UnsafeRawBufferPointer) throws(HTTPResponseError) -> Int {
        guard !value.isEmpty, value.count <= 18 else { throw .malformedHeader("bad content-length: \(printable(value))") }
        var length = 0
        for byte in value {
            guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") else {
                throw .malformedHeader("bad content-length: \(printable(value))")
            }
            length = length * 10 + Int(byte - UInt8(ascii: "0"))
        }
        return length
    }

    /// Whether `chunked` is the last of the codings listed (RFC 9112 6.3: only then is the body chunk-framed).
    private static func lastCodingIsChunked(_ codings: String) -> Bool {
        let last = codings.split(separator: ",").last.map { $0.trimmingASCIISpaces() } ?? ""
        return last.lowercased() == "chunked"
    }

    private static func forEachToken(_ value: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer) -> Void) {
        var start = 0
        for end in 0...value.count where end == value.count || value[end] == UInt8(ascii: ",") {
            body(trim(UnsafeRawBufferPointer(rebasing: value[start..<end])))
            start = end + 1
        }
    }

    private static func trim(_ bytes: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        var start = 0
        var end = bytes.count
        while start < end, bytes[start] == UInt8(ascii: " ") || bytes[start] == UInt8(ascii: "\t") { start += 1 }
        while end > start, bytes[end - 1] == UInt8(ascii: " ") || bytes[end - 1] == UInt8(ascii: "\t") { end -= 1 }
        return UnsafeRawBufferPointer(rebasing: bytes[start..<end])
    }

    /// The bytes as text for an error message: at most 120 of them, control bytes escaped.
    private static func printable<Bytes: Sequence<UInt8>>(_ bytes: Bytes) -> String {
        var text = ""
        for (offset, byte) in bytes.enumerated() {
            if offset == 120 {
                text += "..."
                break
            }
            if byte >= 0x20 && byte < 0x7F { text.unicodeScalars.append(Unicode.Scalar(byte)) } else { text += "\\x" + String(byte, radix: 16) }
        }
        return text
    }

    private static func printable(_ buffer: ByteBuffer) -> String {
        printable(buffer.readableBytesView)
    }
}

/// Why a legacy service's response could not be read: the call gets 502 with this text, and the connection closes.
enum HTTPResponseError: Error, CustomStringConvertible {
    case malformedStatusLine(String)
    case malformedHeader(String)
    case malformedChunk(String)
    case headTooLarge(limit: Int)
    case tooManyHeaders(limit: Int)
    case interimTooLarge(limit: Int)
    case tooLarge(limit: Int)
    case unexpectedStatus(Int, String)
    case closedMidResponse
    case unsolicited(bytes: Int)

    var description: String {
        switch self {
        case .malformedStatusLine(let line): "its response's status line is not HTTP/1.x NNN: '\(line)'"
        case .malformedHeader(let reason): "its response has a malformed header: \(reason)"
        case .malformedChunk(let reason): "its chunked response is malformed: \(reason)"
        case .headTooLarge(let limit): "its response's head is larger than \(limit) bytes"
        case .tooManyHeaders(let limit): "its response has more than \(limit) headers"
        case .interimTooLarge(let limit): "its interim (1xx) responses before the final one are larger than \(limit) bytes"
        case .tooLarge(let limit): HTTPReplyTooLarge(limit: limit).description
        case .unexpectedStatus(let status, let reason): "it answered \(status): \(reason)"
        case .closedMidResponse: "it closed the connection in the middle of its response"
        case .unsolicited(let bytes): "it sent \(bytes) bytes while no request was waiting for an answer"
        }
    }
}

/// A legacy HTTP response whose body passed the adapter's `max_reply`: the call fails (502) and the connection closes.
struct HTTPReplyTooLarge: Error, CustomStringConvertible {
    let limit: Int
    var description: String {
        "its response body is larger than the adapter's max_reply (\(limit) bytes); raise `max_reply` if such answers are expected"
    }
}

extension Substring {
    fileprivate func trimmingASCIISpaces() -> Substring {
        var text = self
        while let first = text.first, first == " " || first == "\t" { text.removeFirst() }
        while let last = text.last, last == " " || last == "\t" { text.removeLast() }
        return text
    }
}
