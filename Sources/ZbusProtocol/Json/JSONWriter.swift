import NIOCore

/// Writes compact JSON as UTF-8 bytes straight into a `ByteBuffer`.
///
/// Every string is escaped (quotes, backslashes, control characters); other characters, including non-ASCII ones, are
/// written as UTF-8. Object members are written in sorted key order, so output is deterministic. Non-finite numbers,
/// which JSON cannot carry, are written as `null`.
public enum JSONWriter {
    /// Appends `value` to `buffer`.
    public static func write(_ value: JSONValue, into buffer: inout ByteBuffer) {
        switch value {
        case .null: buffer.writeStaticString("null")
        case .bool(true): buffer.writeStaticString("true")
        case .bool(false): buffer.writeStaticString("false")
        case .int(let number): writeInteger(number, into: &buffer)
        case .double(let number): writeDouble(number, into: &buffer)
        case .string(let text): writeString(text, into: &buffer)
        case .array(let items):
            buffer.writeInteger(UInt8(ascii: "["))
            for (offset, item) in items.enumerated() {
                if offset > 0 { buffer.writeInteger(UInt8(ascii: ",")) }
                write(item, into: &buffer)
            }
            buffer.writeInteger(UInt8(ascii: "]"))
        case .object(let members):
            buffer.writeInteger(UInt8(ascii: "{"))
            var first = true
            for key in members.keys.sorted() {
                if !first { buffer.writeInteger(UInt8(ascii: ",")) }
                first = false
                writeString(key, into: &buffer)
                buffer.writeInteger(UInt8(ascii: ":"))
                write(members[key]!, into: &buffer)
            }
            buffer.writeInteger(UInt8(ascii: "}"))
        }
    }

    /// The compact JSON text of `value`.
    public static func text(of value: JSONValue) -> String {
        var buffer = ByteBuffer()
        write(value, into: &buffer)
        return String(buffer: buffer)
    }

    /// Appends `number` in decimal.
    public static func writeInteger(_ number: Int64, into buffer: inout ByteBuffer) {
        MessageSerializer.writeDecimal(number, into: &buffer)
    }

    /// Appends `number`, or `null` when it is not finite.
    public static func writeDouble(_ number: Double, into buffer: inout ByteBuffer) {
        guard number.isFinite else {
            buffer.writeStaticString("null")
            return
        }
        // Swift's description is the shortest text that reads back as the same Double, and is valid JSON
        // ("1.5", "3.0", "1e-07").
        buffer.writeString(number.description)
    }

    /// Appends `text` as a quoted, escaped JSON string.
    public static func writeString(_ text: String, into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt8(ascii: "\""))
        var text = text
        text.withUTF8 { utf8 in
            var runStart = 0
            for index in 0..<utf8.count {
                let byte = utf8[index]
                guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") else { continue }
                if index > runStart { buffer.writeBytes(UnsafeBufferPointer(rebasing: utf8[runStart..<index])) }
                runStart = index + 1
                switch byte {
                case UInt8(ascii: "\""): buffer.writeStaticString("\\\"")
                case UInt8(ascii: "\\"): buffer.writeStaticString("\\\\")
                case 0x0A: buffer.writeStaticString("\\n")
                case 0x0D: buffer.writeStaticString("\\r")
                case 0x09: buffer.writeStaticString("\\t")
                case 0x08: buffer.writeStaticString("\\b")
                case 0x0C: buffer.writeStaticString("\\f")
                default:
                    let hex: [UInt8] = Array("0123456789abcdef".utf8)
                    buffer.writeStaticString("\\u00")
                    buffer.writeInteger(hex[Int(byte >> 4)])
                    buffer.writeInteger(hex[Int(byte & 0x0F)])
                }
            }
            if utf8.count > runStart { buffer.writeBytes(UnsafeBufferPointer(rebasing: utf8[runStart..<utf8.count])) }
        }
        buffer.writeInteger(UInt8(ascii: "\""))
    }
}
