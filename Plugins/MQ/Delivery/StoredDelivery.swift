import NIOCore
import ZbusKernel

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

extension Message {
    /// The message as a consumer receives it (zbus 6 §3): status 200 unless it carries a status, `cmd` and `ack`
    /// dropped, `rawid` = the producer's `id`, `id` = the consume's id (when it had one).
    package func delivered(requestId: String?, close: Bool) -> Message {
        // Built rather than copied and edited: one pass over the headers (`Headers.forDelivery`).
        var status = startLine
        if case .request = startLine { status = .status(code: 200, reason: nil) }
        var message = Message(startLine: status, headers: headers.forDelivery(requestId: requestId), body: body)
        message.closeRequested = close
        message.acceptedAt = acceptedAt  // the same message, delivered
        return message
    }
}

/// Writes a stored record (a message in the store's wire form) straight into an outgoing buffer as its delivery to a
/// consumer, without parsing it into a ``Message``: the bytes ``Message/delivered(requestId:close:)`` followed by the
/// serializer would produce, for the records this node writes.
///
/// Consuming a durable MQ reads every message back from the store; building a `Message` from it (a string per header)
/// only to write it out again was the largest cost of a consume.
package enum StoredDelivery: OutgoingRecordEncoder {
    /// Appends the delivery of `record` to `buffer`.
    ///
    /// - Returns: `false` (leaving `buffer` untouched) for a record this writer does not handle: not in the form the
    ///   serializer writes (a head without its end, a `content-length` that does not match the body, more than
    ///   ``Plan/maxLines`` header lines). The caller then parses the record and delivers the message the general way.
    package static func writeFast(record: ByteBuffer, requestId: String?, close: Bool, into buffer: inout ByteBuffer) -> Bool {
        record.withUnsafeReadableBytes { bytes in
            // The plan notes where each header line's parts are, so the write does not look for them again.
            withUnsafeTemporaryAllocation(of: Plan.Line.self, capacity: Plan.maxLines) { lines in
                guard let plan = Plan(bytes, lines: lines) else { return false }
                write(bytes, plan: plan, lines: UnsafeBufferPointer(rebasing: lines[0..<plan.lineCount]), requestId: requestId,
                      close: close, into: &buffer)
                return true
            }
        }
    }

    /// The delivery of `record` as a ``Message``, parsed the general way (for transports that carry messages, and for
    /// records ``write(record:requestId:close:into:)`` does not handle). A record that does not parse (it passed its
    /// checksum, so it was never written by a node) is answered with a 500 naming the problem instead.
    package static func message(record: ByteBuffer, requestId: String?, close: Bool) -> Message {
        var buffer = record
        let size = max(record.readableBytes, 1)
        var parser = MessageParser(limits: MessageLimits(maxHeaderBytes: size, maxBodyBytes: size))
        do {
            if let message = try parser.next(&buffer) { return message.delivered(requestId: requestId, close: close) }
            return unreadable("incomplete message", requestId: requestId, close: close)
        } catch {
            return unreadable("\(error)", requestId: requestId, close: close)
        }
    }

    private static func unreadable(_ reason: String, requestId: String?, close: Bool) -> Message {
        var reply = Message.reply(status: 500, body: "stored message unreadable: \(reason)", id: requestId, mq: nil)
        reply.closeRequested = close
        return reply
    }

    /// Appends the delivery of `record` to `buffer`, parsing it the general way when the fast path does not apply.
    package static func write(record: ByteBuffer, requestId: String?, close: Bool, into buffer: inout ByteBuffer) {
        guard !writeFast(record: record, requestId: requestId, close: close, into: &buffer) else { return }
        MessageSerializer.write(message(record: record, requestId: requestId, close: close), into: &buffer)
    }

    /// What one pass over the head found, including the exact size of the delivery's head parts that depend on it.
    private struct Plan {
        /// Offset of the `\r\n` that ends the start line.
        var startLineEnd: Int
        var isStatusLine: Bool
        /// The producer's id (value bytes), if the record has one.
        var storedId: Range<Int>?
        var bodyStart: Int
        var bodyLength: Int
        /// Bytes of the header lines copied through (`name: value\r\n` each).
        var copiedBytes = 0
        /// `id` lines and the sum of their value lengths.
        var idLines = 0
        var idValueBytes = 0
        /// `rawid` lines and the sum of their value lengths.
        var rawIdLines = 0
        var rawIdValueBytes = 0
        /// Header lines noted in the caller's `lines` buffer.
        var lineCount = 0

        /// Header lines a plan notes at most (a record with more is delivered the general way). With 20-byte lines
        /// the notes take 960 bytes, under the 1 KiB up to which `withUnsafeTemporaryAllocation` uses the stack: above
        /// it, every delivery paid for a heap allocation and its release.
        static let maxLines = 48

        /// Where one header line's parts are: offsets into the record, 32 bits wide to keep the notes small (a
        /// record whose head reaches past 4 GiB is not planned).
        struct Line {
            private var nameStart: UInt32
            private var nameEnd: UInt32
            private var valueStart: UInt32
            private var valueEnd: UInt32
            var kind: Kind

            init(name: Range<Int>, value: Range<Int>, kind: Kind) {
                nameStart = UInt32(truncatingIfNeeded: name.lowerBound)
                nameEnd = UInt32(truncatingIfNeeded: name.upperBound)
                valueStart = UInt32(truncatingIfNeeded: value.lowerBound)
                valueEnd = UInt32(truncatingIfNeeded: value.upperBound)
                self.kind = kind
            }

            var name: Range<Int> { Int(nameStart)..<Int(nameEnd) }
            var value: Range<Int> { Int(valueStart)..<Int(valueEnd) }
        }

        /// Plans the delivery of the record `bytes` in one pass over its head, noting each header line in `lines`.
        init?(_ bytes: UnsafeRawBufferPointer, lines: UnsafeMutableBufferPointer<Line>) {
            guard let firstLineEnd = Self.lineEnd(bytes, from: 0) else { return nil }
            self.startLineEnd = firstLineEnd
            self.isStatusLine = firstLineEnd >= 5 && bytes[0] == UInt8(ascii: "H") && bytes[1] == UInt8(ascii: "T")
                && bytes[2] == UInt8(ascii: "T") && bytes[3] == UInt8(ascii: "P") && bytes[4] == UInt8(ascii: "/")
            var contentLength: Int?
            var lineStart = firstLineEnd + 2
            // Lines up to the first empty one (the first `\r\n\r\n` ends the head).
            while true {
                guard let end = Self.lineEnd(bytes, from: lineStart) else { return nil }
                if end == lineStart { break }
                guard lineCount < lines.count, end <= Int(UInt32.max), let (name, value) = Self.split(bytes, lineStart..<end) else {
                    return nil
                }
                let kind = Self.kind(bytes, name)
                lines[lineCount] = Line(name: name, value: value, kind: kind)
                lineCount += 1
                switch kind {
                case .id:
                    storedId = value
                    idLines += 1
                    idValueBytes += value.count
                case .rawId:
                    rawIdLines += 1
                    rawIdValueBytes += value.count
                case .contentLength:
                    var number = 0
                    for offset in value {
                        let digit = bytes[offset] &- UInt8(ascii: "0")
                        guard digit < 10, number < 1 << 40 else { return nil }
                        number = number * 10 + Int(digit)
                    }
                    contentLength = number
                case .other: copiedBytes += name.count + 2 + value.count + 2
                case .connection, .transferEncoding, .command: break
                }
                lineStart = end + 2
            }
            self.bodyStart = lineStart + 2
            self.bodyLength = bytes.count - bodyStart
            guard (contentLength ?? 0) == bodyLength else { return nil }
        }

        /// The exact size of the delivery written by ``StoredDelivery/write(_:plan:lines:requestId:close:into:)``.
        func deliverySize(requestIdLength: Int?, close: Bool) -> Int {
            var size = isStatusLine ? startLineEnd + 2 : 17
            size += copiedBytes
            size += idLines * 6 + (requestIdLength.map { $0 * idLines } ?? idValueBytes)
            size += rawIdLines * 9 + (storedId.map { $0.count * rawIdLines } ?? rawIdValueBytes)
            if let storedId, rawIdLines == 0 { size += 9 + storedId.count }
            if storedId == nil, let requestIdLength { size += 6 + requestIdLength }
            size += 16 + MessageSerializer.decimalWidth(bodyLength) + 2 + (close ? 21 : 26)
            return size + bodyLength
        }

        /// Offset of the next `\r\n` at or after `from`.
        static func lineEnd(_ bytes: UnsafeRawBufferPointer, from: Int) -> Int? {
            guard let base = bytes.baseAddress else { return nil }
            var index = from
            while index + 1 < bytes.count {
                guard let hit = memchr(base + index, Int32(UInt8(ascii: "\r")), bytes.count - 1 - index) else { return nil }
                let found = base.distance(to: UnsafeRawPointer(hit))
                if bytes[found + 1] == UInt8(ascii: "\n") { return found }
                index = found + 1
            }
            return nil
        }

        /// The name and the trimmed value of a header line.
        static func split(_ bytes: UnsafeRawBufferPointer, _ line: Range<Int>) -> (Range<Int>, Range<Int>)? {
            guard let base = bytes.baseAddress, !line.isEmpty,
                let hit = memchr(base + line.lowerBound, Int32(UInt8(ascii: ":")), line.count)
            else { return nil }
            let colon = base.distance(to: UnsafeRawPointer(hit))
            guard colon > line.lowerBound else { return nil }
            var valueStart = colon + 1
            var valueEnd = line.upperBound
            while valueStart < valueEnd, bytes[valueStart] == 0x20 || bytes[valueStart] == 0x09 { valueStart += 1 }
            while valueEnd > valueStart, bytes[valueEnd - 1] == 0x20 || bytes[valueEnd - 1] == 0x09 { valueEnd -= 1 }
            var nameEnd = colon
            while nameEnd > line.lowerBound, bytes[nameEnd - 1] == 0x20 || bytes[nameEnd - 1] == 0x09 { nameEnd -= 1 }
            return (line.lowerBound..<nameEnd, valueStart..<valueEnd)
        }

        enum Kind: UInt8 { case id, rawId, contentLength, connection, transferEncoding, command, other }

        static func kind(_ bytes: UnsafeRawBufferPointer, _ name: Range<Int>) -> Kind {
            let name = UnsafeRawBufferPointer(rebasing: bytes[name])
            switch name.count {
            case 2 where ASCIIBytes.equalsIgnoringCase(name, "id"): return .id
            case 3 where ASCIIBytes.equalsIgnoringCase(name, "cmd") || ASCIIBytes.equalsIgnoringCase(name, "ack"): return .command
            case 5 where ASCIIBytes.equalsIgnoringCase(name, "rawid"): return .rawId
            case 10 where ASCIIBytes.equalsIgnoringCase(name, "connection"): return .connection
            case 14 where ASCIIBytes.equalsIgnoringCase(name, "content-length"): return .contentLength
            case 17 where ASCIIBytes.equalsIgnoringCase(name, "transfer-encoding"): return .transferEncoding
            default: return .other
            }
        }

    }

    /// Writes the delivery in one reservation of its exact size, with plain memory copies (a `ByteBuffer` write per
    /// fragment costs a capacity and uniqueness check each, which was most of this function's time).
    private static func write(_ bytes: UnsafeRawBufferPointer, plan: Plan, lines: UnsafeBufferPointer<Plan.Line>, requestId: String?,
                              close: Bool, into buffer: inout ByteBuffer) {
        let size = plan.deliverySize(requestIdLength: requestId?.utf8.count, close: close)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { target in
            var writer = RawWriter(base: target.baseAddress!)
            if plan.isStatusLine {
                writer.append(bytes: UnsafeRawBufferPointer(rebasing: bytes[0..<plan.startLineEnd]))
                writer.append("\r\n")
            } else {
                writer.append("HTTP/1.1 200 OK\r\n")
            }
            let storedId = plan.storedId.map { UnsafeRawBufferPointer(rebasing: bytes[$0]) }
            for line in lines {
                let (name, value) = (line.name, line.value)
                switch line.kind {
                case .contentLength, .connection, .transferEncoding, .command:
                    continue
                case .id:
                    writer.append("id: ")
                    if let requestId { writer.append(string: requestId) } else { writer.append(bytes: UnsafeRawBufferPointer(rebasing: bytes[value])) }
                case .rawId:
                    writer.append("rawid: ")
                    writer.append(bytes: storedId ?? UnsafeRawBufferPointer(rebasing: bytes[value]))
                case .other:
                    // Names are written lower-cased, as the parser would have stored them.
                    for offset in 0..<name.count {
                        writer.base.storeBytes(of: ASCIIBytes.lower(bytes[name.lowerBound + offset]), toByteOffset: writer.offset + offset, as: UInt8.self)
                    }
                    writer.offset += name.count
                    writer.append(": ")
                    writer.append(bytes: UnsafeRawBufferPointer(rebasing: bytes[value]))
                }
                writer.append("\r\n")
            }
            if let storedId, plan.rawIdLines == 0 {
                writer.append("rawid: ")
                writer.append(bytes: storedId)
                writer.append("\r\n")
            }
            if storedId == nil, let requestId {
                writer.append("id: ")
                writer.append(string: requestId)
                writer.append("\r\n")
            }
            writer.append("content-length: ")
            writer.appendDecimal(plan.bodyLength)
            writer.append(close ? "\r\nconnection: close\r\n\r\n" : "\r\nconnection: Keep-Alive\r\n\r\n")
            writer.append(bytes: UnsafeRawBufferPointer(rebasing: bytes[plan.bodyStart...]))
            precondition(writer.offset == size, "delivery size miscounted")
            return writer.offset
        }
    }
}
