import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Incremental parser of zbus framing (HTTP/1.1 text framing, body by `content-length` only).
///
/// Strict where a lenient reading could split a byte stream differently from another HTTP/1.1 parser (request
/// smuggling, RFC 9112 11.2): every line of a header block must end with CRLF, a header name must be followed
/// directly by its colon, folded lines, bare CRs, conflicting `content-length`s and any `transfer-encoding` are
/// refused. Each refusal is a ``MessageDecodingError`` that names what was wrong; the connection is closed after it.
///
/// A pure state machine over a `ByteBuffer`, free of channel plumbing so that it can be fuzzed and tested directly.
/// Feed it the accumulated input; it consumes whole messages and leaves partial ones in place. It remembers how far it
/// already searched for the end of the header block, so input that arrives a byte at a time is scanned once.
public struct MessageParser: Sendable {
    /// The limits in force.
    public let limits: MessageLimits

    /// Bytes of the readable region already searched for the blank line that ends the header block.
    private var scanned = 0
    /// A decoded head waiting for `pendingBodyLength` body bytes.
    private var pendingHead: Message?
    private var pendingBodyLength = 0
    /// Set when the waiting head asked for `expect: 100-continue`; cleared by ``takeContinueRequest()``.
    private var continueRequested = false

    /// Headers the transport stamps on every message it decodes (the node's `sender`, `server`, `remote-addr`).
    /// Whatever the peer sent under those names is dropped. Stamping while decoding saves copying each message's
    /// headers again afterwards.
    public var stamp: InboundStamp?

    /// Creates a parser enforcing `limits`, stamping `stamp` (if any) on every message.
    public init(limits: MessageLimits = .default, stamp: InboundStamp? = nil) {
        self.limits = limits
        self.stamp = stamp
    }

    /// Whether some input has been consumed into a message that is not complete yet.
    public var hasPartialMessage: Bool { pendingHead != nil || scanned > 0 }

    /// Whether a message's header block is complete and its body is still arriving.
    public var isReadingBody: Bool { pendingHead != nil }

    /// Returns `true` once when a waiting head asked for `expect: 100-continue` (curl does for larger bodies), so the
    /// transport can answer `100 Continue` instead of leaving the client to wait.
    public mutating func takeContinueRequest() -> Bool {
        defer { continueRequested = false }
        return continueRequested
    }

    /// Parses the next complete message out of `buffer`.
    ///
    /// - Returns: the message, or `nil` when more input is needed (nothing of a partial message is lost).
    /// - Throws: ``MessageDecodingError`` when the input is malformed or breaks a limit; the stream is unusable then.
    public mutating func next(_ buffer: inout ByteBuffer) throws(MessageDecodingError) -> Message? {
        if pendingHead != nil {
            return takeBody(&buffer)
        }
        // Tolerate blank lines between messages (some clients send a CRLF after a body).
        if scanned == 0 {
            while let byte = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self),
                byte == UInt8(ascii: "\r") || byte == UInt8(ascii: "\n")
            {
                buffer.moveReaderIndex(forwardBy: 1)
            }
        }
        let readable = buffer.readableBytes
        guard let headEnd = try Self.findHeadEnd(in: buffer, from: scanned) else {
            if readable >= limits.maxHeaderBytes { throw .headerTooLarge(limit: limits.maxHeaderBytes) }
            scanned = readable
            return nil
        }
        let headLength = headEnd + 4
        if headLength > limits.maxHeaderBytes { throw .headerTooLarge(limit: limits.maxHeaderBytes) }
        // The message is returned, never copied: each copy of a message is a retain and a release of each of its
        // parts, for every message the node or a client reads. (The framing values come back through captured
        // integers: a message captured by the closure, or returned in a tuple, would be copied out.)
        var bodyLength = 0
        var expectContinue = false
        var message = try buffer.withUnsafeReadableBytes { (bytes) throws(MessageDecodingError) -> Message in
            try Self.parseHead(UnsafeRawBufferPointer(rebasing: bytes[0..<headEnd]), limits: limits, stamp: stamp,
                               contentLength: &bodyLength, expectContinue: &expectContinue)
        }
        buffer.moveReaderIndex(forwardBy: headLength)
        scanned = 0
        if bodyLength == 0 { return message }
        if buffer.readableBytes >= bodyLength {
            // The usual case: the body came with its head. Attached here, the message is not parked in
            // `pendingHead` and copied out again.
            message.body = buffer.readSlice(length: bodyLength)
            return message
        }
        pendingHead = message
        pendingBodyLength = bodyLength
        if expectContinue { continueRequested = true }
        return nil
    }

    private mutating func takeBody(_ buffer: inout ByteBuffer) -> Message? {
        guard buffer.readableBytes >= pendingBodyLength, var message = pendingHead.take() else { return nil }
        message.body = buffer.readSlice(length: pendingBodyLength)
        pendingBodyLength = 0
        return message
    }

    /// Offset (from the reader index) of the `\r\n\r\n` that ends the header block, searching from `start` (the
    /// bytes before it were searched already).
    ///
    /// Every line feed of the block is looked at here anyway, so this is also where a bare LF is refused: at no extra
    /// cost, and as soon as it arrives. Accepting LF-only lines instead (RFC 9112 2.2 allows either) would end a
    /// header block where the Java zbus 6.3 node, which ends it only at `\r\n\r\n`, and strict HTTP intermediaries
    /// do not: two readings of one stream, the shape request smuggling needs. No zbus client sends bare LFs (the
    /// 2016 clients and the transcripts all use CRLF), while without this check a request framed with them waited
    /// forever for a blank line that never came.
    private static func findHeadEnd(in buffer: ByteBuffer, from start: Int) throws(MessageDecodingError) -> Int? {
        // The closure answers with one plain integer (the end's offset, -1 for "not yet", -2 - offset for a bare LF
        // at `offset`), so the typed error is thrown outside the buffer's closure.
        let found = buffer.withUnsafeReadableBytes { bytes -> Int in
            let count = bytes.count
            guard let base = bytes.baseAddress else { return -1 }
            // The first byte is never a line feed: blank lines before a message are skipped before the search.
            var position = max(1, start)
            while position < count {
                // memchr is vectorised; a header block has few line feeds, so most bytes are skipped in bulk.
                guard let hit = memchr(base + position, Int32(UInt8(ascii: "\n")), count - position) else { return -1 }
                let index = base.distance(to: UnsafeRawPointer(hit))
                guard bytes[index - 1] == UInt8(ascii: "\r") else { return -2 - index }
                if index >= 3, bytes[index - 2] == UInt8(ascii: "\n"), bytes[index - 3] == UInt8(ascii: "\r") {
                    return index - 3
                }
                position = index + 1
            }
            return -1
        }
        if found >= 0 { return found }
        if found == -1 { return nil }
        throw .bareLineFeed(offset: -2 - found)
    }

    // MARK: - Head

    private static func parseHead(
        _ head: UnsafeRawBufferPointer,
        limits: MessageLimits,
        stamp: InboundStamp?,
        contentLength: inout Int,
        expectContinue: inout Bool
    ) throws(MessageDecodingError) -> Message {
        var lines = LineIterator(head)
        guard let firstLine = lines.next() else { throw .malformedStartLine("") }
        let startLine: StartLine
        let isHTTP10: Bool
        do {
            (startLine, isHTTP10) = try parseStartLine(firstLine)
        } catch {
            throw firstLine.contains(0x0D) ? .bareCarriageReturn(printable(firstLine)) : error
        }
        var message = Message(startLine: startLine)

        contentLength = 0
        expectContinue = false
        var connectionClose = false
        var connectionKeepAlive = false
        var contentLengthSeen = false
        // Set only by a `transfer-encoding` header (rare), judged once the whole block is read: together with a
        // `content-length` it is refused whichever of the two came first.
        var transferEncoding: String? = nil
        var peerServer: String? = nil
        var index: [String: Int]? = nil  // built only for unusually many headers, to keep de-duplication linear
        // Where the protocol's own names land, for reads without a search (`Headers.value(indexed:)`). While the
        // block is short (no `index`) every one is noted, so an empty slot also says the name has not come yet: the
        // first of each is appended without looking for an earlier one (the usual message repeats none, and its
        // names are mostly these).
        var slots = SIMD16<UInt8>()
        var indexable = true
        // The lengths (modulo 64) of the names appended that have no slot: a name of a length not among them repeats
        // none of them, and the search for a repeat is skipped (a request's other names are mostly of different
        // lengths: `host`, `user-agent`, `accept`...).
        var otherLengths: UInt64 = 0
        func noteSlot(_ indexed: Headers.Indexed?, at position: Int) {
            guard let indexed else { return }
            if position < 255 { slots[indexed.rawValue] = UInt8(position + 1) } else { indexable = false }
        }
        message.headers.reserveCapacity(12)

        while let line = lines.next() {
            guard let base = line.baseAddress, let hit = memchr(base, Int32(UInt8(ascii: ":")), line.count) else {
                throw headerLineError(line, colon: nil)
            }
            let colon = base.distance(to: UnsafeRawPointer(hit))
            // The name is not trimmed: whitespace before it (a folded line) or before the colon fails the token check
            // below, and `headerLineError` then says which it was.
            let rawName = UnsafeRawBufferPointer(rebasing: line[0..<colon])
            let rawValue = trim(UnsafeRawBufferPointer(rebasing: line[(colon + 1)...]))
            // One pass per part: a name is token bytes, a value has no control bytes but tabs.
            for byte in rawName where !ASCIIBytes.isTokenByte(byte) { throw headerLineError(line, colon: colon) }
            guard !rawName.isEmpty else { throw .malformedHeader(printable(line)) }
            if ASCIIBytes.hasControlBytes(rawValue) { throw headerLineError(line, colon: colon) }
            let special = classify(rawName)
            let indexed = Self.indexed(special)
            switch special {
            case .contentLength:
                let length = try parseContentLength(rawValue, limits: limits)
                // Identical repeats frame the body alike and are accepted (RFC 9110 8.6 allows either); different
                // values are refused rather than letting one win. A comma list ("5, 5") fails the digit check.
                if contentLengthSeen, length != contentLength {
                    throw .conflictingContentLength(first: String(contentLength), second: printable(rawValue))
                }
                contentLength = length
                contentLengthSeen = true
                continue
            case .connection:
                var start = 0
                for end in 0...rawValue.count where end == rawValue.count || rawValue[end] == UInt8(ascii: ",") {
                    let token = trim(UnsafeRawBufferPointer(rebasing: rawValue[start..<end]))
                    if ASCIIBytes.equalsIgnoringCase(token, "close") { connectionClose = true }
                    if ASCIIBytes.equalsIgnoringCase(token, "keep-alive") { connectionKeepAlive = true }
                    start = end + 1
                }
                continue
            case .transferEncoding:
                transferEncoding = printable(rawValue)
                continue
            case .expect:
                if ASCIIBytes.equalsIgnoringCase(rawValue, "100-continue") { expectContinue = true }
            case .server:
                // Kept aside: a tracker report names its reporter here (see `stampedServer`).
                if stamp != nil {
                    peerServer = String(decoding: rawValue, as: UTF8.self)
                    continue
                }
            case .sender, .remoteAddr:
                if stamp != nil { continue }
            case .mq, .id, .cmd, .ack, .rawId, .token, .timeout, .key, .keyGroup, .topic, .recver, .httpMethod, .httpPath, .other:
                break
            }
            let name = indexed?.name ?? ASCIIBytes.lowercasedName(rawName)
            let value = String(decoding: rawValue, as: UTF8.self)
            if index == nil && message.headers.count >= 16 {
                var built: [String: Int] = [:]
                for (offset, entry) in message.headers.storage.enumerated() { built[entry.name] = offset }
                index = built
            }
            if index == nil, let indexed, slots[indexed.rawValue] == 0 {
                noteSlot(indexed, at: message.headers.count)
                message.headers.appendUnchecked(name: name, value: value)
            } else if index != nil {
                if let existing = index![name] {
                    if Headers.keepsRepeats(name) {
                        message.headers.appendUnchecked(name: name, value: value)  // another set-cookie line
                    } else {
                        message.headers.storage[existing].value = value
                    }
                } else {
                    index![name] = message.headers.count
                    noteSlot(indexed, at: message.headers.count)
                    message.headers.appendUnchecked(name: name, value: value)
                }
            } else if indexed == nil, otherLengths & (1 << UInt64(rawName.count & 63)) == 0 {
                // No earlier name of the others has this length, so none is this one: appended without a search.
                otherLengths |= 1 << UInt64(rawName.count & 63)
                message.headers.appendUnchecked(name: name, value: value)
            } else if let existing = message.headers.storage.firstIndex(where: { Headers.same($0.name, name) }) {
                // A repeated name: the last value wins, but for set-cookie, whose lines are kept apart. Only here,
                // on a repeat, is the name compared: the usual header pays nothing for the exception.
                if Headers.keepsRepeats(name) {
                    message.headers.appendUnchecked(name: name, value: value)
                } else {
                    message.headers.storage[existing].value = value
                }
            } else {
                noteSlot(indexed, at: message.headers.count)
                message.headers.appendUnchecked(name: name, value: value)
            }
        }
        if let transferEncoding {
            // zbus carries no transfer coding. Whatever one was named, a reader honouring it would find a different
            // body end than `content-length` (or none) gives, so the message is refused rather than guessed at.
            if contentLengthSeen { throw .transferEncodingWithContentLength }
            if transferEncoding.lowercased().contains("chunked") { throw .chunkedNotSupported }
            throw .unsupportedTransferEncoding(transferEncoding)
        }
        if let stamp {
            // What the peer sent under these names was skipped above, so they can be appended without a search.
            noteSlot(.sender, at: message.headers.count)
            message.headers.appendUnchecked(name: HeaderName.sender, value: stamp.sender)
            noteSlot(.server, at: message.headers.count)
            message.headers.appendUnchecked(name: HeaderName.server, value: Self.stampedServer(stamp, peerServer: peerServer, cmdSlot: slots[Headers.Indexed.cmd.rawValue], headers: message.headers))
            noteSlot(.remoteAddr, at: message.headers.count)
            message.headers.appendUnchecked(name: HeaderName.remoteAddr, value: stamp.remoteAddress)
        }
        // Set after the last append (an append clears the index).
        message.headers.slots = slots
        message.headers.isIndexed = indexable
        message.closeRequested = isHTTP10 ? !connectionKeepAlive : connectionClose
        return consume message
    }

    /// The `server` stamped on a message: the node's address, except on a tracker report (``TrackerCommand/reports``),
    /// where the peer's own `server` names the reporting node and is kept (zbus 6.3 trackers read it there). A report
    /// without one gets an empty `server`, which the tracker refuses: stamping the node's own address would list the
    /// tracker itself as the reporter.
    ///
    /// `cmdSlot` is the parser's slot of the `cmd` header (its position + 1, 0 for none): the command is read from there,
    /// and only when it has a report's length (11 or 12 bytes) is it looked up, so other messages pay one comparison.
    static func stampedServer(_ stamp: InboundStamp, peerServer: String?, cmdSlot: UInt8, headers: Headers) -> String {
        guard cmdSlot > 0 else { return stamp.server }
        let count = headers.storage[Int(cmdSlot) - 1].value.utf8.count
        guard count == 11 || count == 12, TrackerCommand.reports.contains(headers.storage[Int(cmdSlot) - 1].value) else {
            return stamp.server
        }
        return peerServer ?? ""
    }

    private static func parseStartLine(_ line: UnsafeRawBufferPointer) throws(MessageDecodingError) -> (StartLine, isHTTP10: Bool) {
        // The start lines zbus clients send and nodes answer with, recognised whole: the general tokenizer below and
        // the strings it decodes cost more than the rest of parsing a small message's head.
        if let startLine = commonStartLine(line) { return (startLine, false) }
        // Up to three space-separated tokens, found in one pass without allocating.
        var ranges: (Range<Int>, Range<Int>, Range<Int>) = (0..<0, 0..<0, 0..<0)
        var count = 0
        var offset = 0
        while offset < line.count {
            while offset < line.count, line[offset] == UInt8(ascii: " ") || line[offset] == 0x09 { offset += 1 }
            guard offset < line.count else { break }
            let start = offset
            while offset < line.count, line[offset] != UInt8(ascii: " "), line[offset] != 0x09 { offset += 1 }
            switch count {
            case 0: ranges.0 = start..<offset
            case 1: ranges.1 = start..<offset
            case 2: ranges.2 = start..<offset
            default: break
            }
            count += 1
        }
        guard count > 0 else { throw .malformedStartLine(printable(line)) }
        let first = UnsafeRawBufferPointer(rebasing: line[ranges.0])
        if first.count >= 4, ASCIIBytes.startsWithIgnoringCase(first, "http") {
            // A status line: `HTTP/1.1 200 Reason words`.
            let code = UnsafeRawBufferPointer(rebasing: line[ranges.1])
            guard count >= 2, code.count == 3, code.allSatisfy(isDigit) else { throw .malformedStartLine(printable(line)) }
            let status = code.reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
            guard status >= 100 else { throw .malformedStartLine(printable(line)) }
            return (.status(code: status, reason: nil), false)
        }
        guard count <= 3, first.allSatisfy(ASCIIBytes.isTokenByte),
            UnsafeRawBufferPointer(rebasing: line[ranges.1]).allSatisfy({ $0 > 0x20 && $0 != 0x7F })
        else {
            throw .malformedStartLine(printable(line))
        }
        var isHTTP10 = false
        if count == 3 {
            let version = UnsafeRawBufferPointer(rebasing: line[ranges.2])
            guard version.count >= 5, ASCIIBytes.startsWithIgnoringCase(version, "http/"), version.allSatisfy({ $0 > 0x20 && $0 != 0x7F }) else {
                throw .malformedStartLine(printable(line))
            }
            isHTTP10 = version.count == 8 && version[5] == UInt8(ascii: "1") && version[6] == UInt8(ascii: ".") && version[7] == UInt8(ascii: "0")
        }
        let method = String(decoding: first, as: UTF8.self)
        let uri = count >= 2 ? String(decoding: UnsafeRawBufferPointer(rebasing: line[ranges.1]), as: UTF8.self) : "/"
        return (.request(method: method, uri: uri), isHTTP10)
    }

    /// `GET / HTTP/1.1`, `POST / HTTP/1.1` and `HTTP/1.1 NNN ...` (with a status of 100 or more) as the general
    /// parser reads them; `nil` for any other line.
    @inline(__always)
    private static func commonStartLine(_ line: UnsafeRawBufferPointer) -> StartLine? {
        guard let base = line.baseAddress, line.count >= 12 else { return nil }
        if line.count == 14, memcmp(base, getSlash.utf8Start, 14) == 0 { return .request(method: "GET", uri: "/") }
        if line.count == 15, memcmp(base, postSlash.utf8Start, 15) == 0 { return .request(method: "POST", uri: "/") }
        guard memcmp(base, http11.utf8Start, 9) == 0, line.count == 12 || line[12] == UInt8(ascii: " ") else { return nil }
        let hundreds = line[9] &- UInt8(ascii: "0")
        let tens = line[10] &- UInt8(ascii: "0")
        let units = line[11] &- UInt8(ascii: "0")
        guard hundreds >= 1, hundreds < 10, tens < 10, units < 10 else { return nil }
        return .status(code: Int(hundreds) * 100 + Int(tens) * 10 + Int(units), reason: nil)
    }

    private static let getSlash: StaticString = "GET / HTTP/1.1"
    private static let postSlash: StaticString = "POST / HTTP/1.1"
    private static let http11: StaticString = "HTTP/1.1 "

    private static func parseContentLength(
        _ value: UnsafeRawBufferPointer,
        limits: MessageLimits
    ) throws(MessageDecodingError) -> Int {
        guard !value.isEmpty, value.allSatisfy(isDigit) else {
            throw .invalidContentLength(printable(value))
        }
        var length = 0
        for digit in value {
            let (times10, overflow1) = length.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times10.addingReportingOverflow(Int(digit - UInt8(ascii: "0")))
            if overflow1 || overflow2 || sum > limits.maxBodyBytes {
                throw .bodyTooLarge(declared: printable(value), limit: limits.maxBodyBytes)
            }
            length = sum
        }
        return length
    }

    // MARK: - Byte helpers

    /// What the parser does with a header name: framing headers are consumed, names the node stamps are replaced
    /// when it stamps, and the protocol's frequent names come from constants rather than strings decoded from the
    /// bytes (5–10% less node CPU per pipelined produce in alternating A/B runs).
    ///
    /// A plain enumeration: a case carrying the name's string was a retain and a release per header line. The
    /// protocol's names are taken from ``Headers/Indexed``, which also gives their slots.
    private enum SpecialHeader {
        case other, contentLength, connection, transferEncoding, expect
        /// Names the node stamps.
        case sender, server, remoteAddr
        /// The protocol's frequent names.
        case mq, id, cmd, ack, rawId, token, timeout, key, keyGroup, topic, recver, httpMethod, httpPath
    }

    /// The slot a stamped or frequent header has in ``Headers``' index.
    @inline(__always)
    private static func indexed(_ header: SpecialHeader) -> Headers.Indexed? {
        switch header {
        case .sender: .sender
        case .server: .server
        case .remoteAddr: .remoteAddr
        case .mq: .mq
        case .id: .id
        case .cmd: .cmd
        case .ack: .ack
        case .rawId: .rawId
        case .token: .token
        case .timeout: .timeout
        case .key: .key
        case .keyGroup: .keyGroup
        case .topic: .topic
        case .recver: .recver
        case .httpMethod: .httpMethod
        case .httpPath: .httpPath
        case .other, .contentLength, .connection, .transferEncoding, .expect: nil
        }
    }

    /// Classifies a header name (any case) in one look at its length and bytes.
    private static func classify(_ name: UnsafeRawBufferPointer) -> SpecialHeader {
        switch name.count {
        case 2 where ASCIIBytes.equalsIgnoringCase(name, "mq"): return .mq
        case 2 where ASCIIBytes.equalsIgnoringCase(name, "id"): return .id
        case 3 where ASCIIBytes.equalsIgnoringCase(name, "cmd"): return .cmd
        case 3 where ASCIIBytes.equalsIgnoringCase(name, "ack"): return .ack
        case 3 where ASCIIBytes.equalsIgnoringCase(name, "key"): return .key
        case 4 where ASCIIBytes.equalsIgnoringCase(name, "path"): return .httpPath
        case 5 where ASCIIBytes.equalsIgnoringCase(name, "rawid"): return .rawId
        case 5 where ASCIIBytes.equalsIgnoringCase(name, "token"): return .token
        case 5 where ASCIIBytes.equalsIgnoringCase(name, "topic"): return .topic
        case 6 where ASCIIBytes.equalsIgnoringCase(name, "sender"): return .sender
        case 6 where ASCIIBytes.equalsIgnoringCase(name, "server"): return .server
        case 6 where ASCIIBytes.equalsIgnoringCase(name, "expect"): return .expect
        case 6 where ASCIIBytes.equalsIgnoringCase(name, "recver"): return .recver
        case 7 where ASCIIBytes.equalsIgnoringCase(name, "timeout"): return .timeout
        case 9 where ASCIIBytes.equalsIgnoringCase(name, "key_group"): return .keyGroup
        case 10 where ASCIIBytes.equalsIgnoringCase(name, "connection"): return .connection
        case 11 where ASCIIBytes.equalsIgnoringCase(name, "remote-addr"): return .remoteAddr
        case 11 where ASCIIBytes.equalsIgnoringCase(name, "http-method"): return .httpMethod
        case 14 where ASCIIBytes.equalsIgnoringCase(name, "content-length"): return .contentLength
        case 17 where ASCIIBytes.equalsIgnoringCase(name, "transfer-encoding"): return .transferEncoding
        default: return .other
        }
    }

    @inline(__always)
    private static func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

    private static func trim(_ bytes: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        var lower = 0
        var upper = bytes.count
        while lower < upper, bytes[lower] == 0x20 || bytes[lower] == 0x09 { lower += 1 }
        while upper > lower, bytes[upper - 1] == 0x20 || bytes[upper - 1] == 0x09 { upper -= 1 }
        return UnsafeRawBufferPointer(rebasing: bytes[lower..<upper])
    }

    /// The precise error for a header line that failed a check: folded (it starts with whitespace), whitespace before
    /// the colon, a bare CR, or otherwise malformed. Only reached on the way to refusing the message, so the common
    /// path pays nothing for the diagnosis.
    @inline(never)
    private static func headerLineError(_ line: UnsafeRawBufferPointer, colon: Int?) -> MessageDecodingError {
        func isBlank(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 }
        if let first = line.first, isBlank(first) { return .obsoleteLineFolding(printable(line)) }
        if let colon, colon > 0, isBlank(line[colon - 1]) { return .whitespaceBeforeColon(printable(line)) }
        if line.contains(0x0D) { return .bareCarriageReturn(printable(line)) }
        return .malformedHeader(printable(line))
    }

    /// A short, printable rendering of offending input for error messages.
    private static func printable(_ bytes: UnsafeRawBufferPointer) -> String {
        let prefix = bytes.prefix(80).map { ($0 >= 0x20 && $0 < 0x7F) ? Character(UnicodeScalar($0)) : "?" }
        return String(prefix) + (bytes.count > 80 ? "..." : "")
    }
}

/// Splits a header block into lines at `\n`, dropping a trailing `\r`.
private struct LineIterator {
    let bytes: UnsafeRawBufferPointer
    var position = 0

    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    mutating func next() -> UnsafeRawBufferPointer? {
        guard position < bytes.count, let base = bytes.baseAddress else { return nil }
        var end = bytes.count
        if let hit = memchr(base + position, Int32(UInt8(ascii: "\n")), bytes.count - position) {
            end = base.distance(to: UnsafeRawPointer(hit))
        }
        var lineEnd = end
        if lineEnd > position, bytes[lineEnd - 1] == UInt8(ascii: "\r") { lineEnd -= 1 }
        let line = UnsafeRawBufferPointer(rebasing: bytes[position..<lineEnd])
        position = end + 1
        return line
    }
}


/// The headers a node stamps on everything a connection sends.
public struct InboundStamp: Sendable, Equatable {
    /// The connection's session id.
    public var sender: String
    /// The node's advertised address.
    public var server: String
    /// The peer's `ip:port`.
    public var remoteAddress: String

    /// Creates a stamp.
    public init(sender: String, server: String, remoteAddress: String) {
        self.sender = sender
        self.server = server
        self.remoteAddress = remoteAddress
    }
}
