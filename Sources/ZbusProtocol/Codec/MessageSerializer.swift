import NIOCore

/// Writes a ``Message`` in zbus framing: start line, headers, `content-length`, `connection`, blank line, body.
///
/// Shared by the network encoder and by anything that persists messages in wire form, so both produce the same bytes.
public enum MessageSerializer {
    /// An upper bound of the bytes ``writeHead(_:into:)`` writes for `message`, to size buffers in one allocation.
    @inlinable
    public static func estimatedHeadSize(_ message: Message) -> Int {
        var size = 96
        for entry in message.headers.storage { size += entry.name.utf8.count + entry.value.utf8.count + 4 }
        if case .request(let method, let uri) = message.startLine { size += method.utf8.count + uri.utf8.count }
        return size
    }

    /// Writes the whole message (head then body) into `buffer`.
    public static func write(_ message: Message, into buffer: inout ByteBuffer) {
        writeHead(message, into: &buffer)
        if var body = message.body { buffer.writeBuffer(&body) }
    }

    /// Serializes the whole message into a new buffer (without `cmd` and `ack` when `omittingNodeHeaders`).
    public static func serialize(_ message: Message, allocator: ByteBufferAllocator = ByteBufferAllocator(), omittingNodeHeaders: Bool = false) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: estimatedHeadSize(message) + (message.body?.readableBytes ?? 0))
        writeHead(message, into: &buffer, omittingNodeHeaders: omittingNodeHeaders)
        if var body = message.body { buffer.writeBuffer(&body) }
        return buffer
    }

    /// Writes the start line, the headers and the framing headers, up to and including the blank line.
    ///
    /// The head is sized exactly first and then copied in with raw memory copies: one capacity check per message
    /// rather than one per fragment (this runs for every message in and out of the store and every reply).
    ///
    /// - Parameter omittingNodeHeaders: leave out ``HeaderName/nodeHeaders`` (`cmd`, `ack`), which address the node
    ///   that receives the message, not whoever the message is for: a broker storing or forwarding a message leaves
    ///   them out, so that the sender's message need not be copied to strip them.
    public static func writeHead(_ message: Message, into buffer: inout ByteBuffer, omittingNodeHeaders: Bool = false) {
        let bodyLength = message.body?.readableBytes ?? 0
        var reason = ""
        var size = 0
        switch message.startLine {
        case .status(let code, let customReason):
            reason = customReason ?? HTTPStatus.reason(for: code)
            size += 9 + decimalWidth(code) + 1 + reason.utf8.count + 2
        case .request(let method, let uri):
            size += method.utf8.count + 1 + uri.utf8.count + 11
        }
        // Headers are read in place through the array's buffer: iterating the array would copy each pair out,
        // retaining and releasing both strings, for every header of every message.
        message.headers.storage.withUnsafeBufferPointer { headers in
            for index in headers.indices where !(omittingNodeHeaders && isNodeHeader(headers[index].name)) {
                size += headers[index].name.utf8.count + headers[index].value.utf8.count + 4
            }
        }
        size += 16 + decimalWidth(bodyLength) + 2 + (message.closeRequested ? 21 : 26)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { target in
            var writer = RawWriter(base: target.baseAddress!)
            switch message.startLine {
            case .status(let code, _):
                writer.append("HTTP/1.1 ")
                writer.appendDecimal(code)
                writer.append(" ")
                writer.append(string: reason)
            case .request(let method, let uri):
                writer.append(string: method)
                writer.append(" ")
                writer.append(string: uri)
                writer.append(" HTTP/1.1")
            }
            writer.append("\r\n")
            message.headers.storage.withUnsafeBufferPointer { headers in
                for index in headers.indices where !(omittingNodeHeaders && isNodeHeader(headers[index].name)) {
                    writer.append(string: headers[index].name)
                    writer.append(": ")
                    writer.append(string: headers[index].value)
                    writer.append("\r\n")
                }
            }
            writer.append("content-length: ")
            writer.appendDecimal(bodyLength)
            writer.append(message.closeRequested ? "\r\nconnection: close\r\n\r\n" : "\r\nconnection: Keep-Alive\r\n\r\n")
            precondition(writer.offset == size, "head size miscounted")
            return writer.offset
        }
    }

    /// Writes ``Outgoing/acknowledgement(id:mq:time:)`` exactly as ``write(_:into:)`` writes its ``Outgoing/message``,
    /// without building that message: it is what a node sends most.
    public static func writeAcknowledgement(id: String?, mq: String?, time: Int64, into buffer: inout ByteBuffer) {
        let value = Int(max(0, time))
        let bodyLength = decimalWidth(value)
        var size = 17 + 16 + decimalWidth(bodyLength) + 2 + 26 + bodyLength
        if let mq { size += 6 + mq.utf8.count }
        if let id { size += 6 + id.utf8.count }
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { target in
            var writer = RawWriter(base: target.baseAddress!)
            writer.append("HTTP/1.1 200 OK\r\n")
            if let mq {
                writer.append("mq: ")
                writer.append(string: mq)
                writer.append("\r\n")
            }
            if let id {
                writer.append("id: ")
                writer.append(string: id)
                writer.append("\r\n")
            }
            writer.append("content-length: ")
            writer.appendDecimal(bodyLength)
            writer.append("\r\nconnection: Keep-Alive\r\n\r\n")
            writer.appendDecimal(value)
            precondition(writer.offset == size, "acknowledgement size miscounted")
            return writer.offset
        }
    }

    /// Whether `name` is one of ``HeaderName/nodeHeaders`` (compared on length first: most names are not).
    @inline(__always)
    private static func isNodeHeader(_ name: String) -> Bool {
        name.utf8.count == 3 && (name == HeaderName.cmd || name == HeaderName.ack)
    }

    /// The number of decimal digits of `value` (at least 1).
    @inlinable @inline(__always)
    public static func decimalWidth(_ value: Int) -> Int {
        var width = 1
        var remaining = value
        while remaining >= 10 {
            remaining /= 10
            width += 1
        }
        return width
    }

    /// Writes an integer in decimal without going through `String` (for the JSON writer: RPC arguments and results are
    /// mostly integers, one or more per call).
    package static func writeDecimal(_ value: Int64, into buffer: inout ByteBuffer) {
        if value >= 0 && value < 10 {
            buffer.writeInteger(UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: value))
            return
        }
        // Digits backwards into a scratch area: 19 digits and a sign fit in 20 bytes.
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &digits) { scratch in
            var remaining = value.magnitude
            var position = scratch.count
            repeat {
                position -= 1
                scratch[position] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: remaining % 10)
                remaining /= 10
            } while remaining > 0
            if value < 0 {
                position -= 1
                scratch[position] = UInt8(ascii: "-")
            }
            buffer.writeBytes(UnsafeRawBufferPointer(rebasing: scratch[position...]))
        }
    }
}

/// Appends bytes at a raw pointer whose room was reserved beforehand (the serializer and the MQ module's delivery writer size their
/// output first and then write it with plain memory copies, one capacity check per message).
///
/// Public and inlinable: writers of records kept in wire form (``OutgoingRecordEncoder``) in other modules use it
/// once per header line of every message, and a `package` function is not inlined across modules.
public struct RawWriter {
    /// Where the reserved room starts.
    public let base: UnsafeMutableRawPointer
    /// Bytes written so far.
    public var offset = 0

    /// A writer at the start of the room at `base`.
    @inlinable
    public init(base: UnsafeMutableRawPointer) { self.base = base }

    /// Appends `text`.
    @inlinable @inline(__always)
    public mutating func append(_ text: StaticString) {
        (base + offset).copyMemory(from: text.utf8Start, byteCount: text.utf8CodeUnitCount)
        offset += text.utf8CodeUnitCount
    }

    /// Appends `bytes`.
    @inlinable @inline(__always)
    public mutating func append(bytes: UnsafeRawBufferPointer) {
        if let source = bytes.baseAddress { (base + offset).copyMemory(from: source, byteCount: bytes.count) }
        offset += bytes.count
    }

    /// Appends the UTF-8 bytes of `string`.
    @inlinable @inline(__always)
    public mutating func append(string: String) {
        // Borrowed in place when the string is contiguous UTF-8 (native and small strings always are).
        let copied: Int? = string.utf8.withContiguousStorageIfAvailable { bytes in
            if let source = bytes.baseAddress { (base + offset).copyMemory(from: source, byteCount: bytes.count) }
            return bytes.count
        }
        if let copied {
            offset += copied
            return
        }
        var text = string
        text.withUTF8 { bytes in
            if let source = bytes.baseAddress { (base + offset).copyMemory(from: source, byteCount: bytes.count) }
            offset += bytes.count
        }
    }

    /// Appends `value` in decimal (non-negative).
    @inlinable @inline(__always)
    public mutating func appendDecimal(_ value: Int) {
        let width = MessageSerializer.decimalWidth(value)
        var remaining = value
        for position in stride(from: offset + width - 1, through: offset, by: -1) {
            base.storeBytes(of: UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: remaining % 10), toByteOffset: position, as: UInt8.self)
            remaining /= 10
        }
        offset += width
    }
}
