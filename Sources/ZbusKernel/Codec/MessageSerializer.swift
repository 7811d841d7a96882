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

    /// Serializes the whole message into a new buffer (without `cmd` and `ack` when `omittingCommand`).
    public static func serialize(_ message: Message, allocator: ByteBufferAllocator = ByteBufferAllocator(), omittingCommand: Bool = false) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: estimatedHeadSize(message) + (message.body?.readableBytes ?? 0))
        writeHead(message, into: &buffer, omittingCommand: omittingCommand)
        if var body = message.body { buffer.writeBuffer(&body) }
        return buffer
    }

    /// Writes the start line, the headers and the framing headers, up to and including the blank line.
    ///
    /// - Parameter omittingCommand: leave out `cmd` and `ack`, which address the node, not the receiver (used when a
    ///   produced message is stored, so the producer's message need not be copied to strip them).
    public static func writeHead(_ message: Message, into buffer: inout ByteBuffer, omittingCommand: Bool = false) {
        switch message.startLine {
        case .status(let code, let reason):
            buffer.writeStaticString("HTTP/1.1 ")
            writeDecimal(code, into: &buffer)
            buffer.writeInteger(UInt8(ascii: " "))
            buffer.writeString(reason ?? HTTPStatus.reason(for: code))
        case .request(let method, let uri):
            buffer.writeString(method)
            buffer.writeInteger(UInt8(ascii: " "))
            buffer.writeString(uri)
            buffer.writeStaticString(" HTTP/1.1")
        }
        buffer.writeStaticString("\r\n")
        for entry in message.headers.storage {
            if omittingCommand, entry.name.utf8.count == 3, entry.name == HeaderName.cmd || entry.name == HeaderName.ack { continue }
            buffer.writeString(entry.name)
            buffer.writeStaticString(": ")
            buffer.writeString(entry.value)
            buffer.writeStaticString("\r\n")
        }
        buffer.writeStaticString("content-length: ")
        writeDecimal(message.body?.readableBytes ?? 0, into: &buffer)
        if message.closeRequested {
            buffer.writeStaticString("\r\nconnection: close\r\n\r\n")
        } else {
            buffer.writeStaticString("\r\nconnection: Keep-Alive\r\n\r\n")
        }
    }

    /// Writes a non-negative integer in decimal without going through `String`.
    @inlinable
    static func writeDecimal(_ value: Int, into buffer: inout ByteBuffer) {
        precondition(value >= 0, "negative values are never framed")
        if value < 10 {
            buffer.writeInteger(UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: value))
            return
        }
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &digits) { scratch in
            var remaining = value
            var position = scratch.count
            while remaining > 0 {
                position -= 1
                scratch[position] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: remaining % 10)
                remaining /= 10
            }
            buffer.writeBytes(UnsafeRawBufferPointer(rebasing: scratch[position...]))
        }
    }
}
