import NIOCore

/// Why a body is not JSON: what was found, and where.
public struct JSONParseError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The byte offset of the problem.
    public let offset: Int
    /// What was expected or found there.
    public let reason: String

    /// Creates an error.
    public init(offset: Int, reason: String) {
        self.offset = offset
        self.reason = reason
    }

    /// What went wrong, in one line.
    public var description: String { "invalid JSON at byte \(offset): \(reason)" }
}

/// A JSON parser that reads what zbus 6 peers really send.
///
/// Standard JSON (RFC 8259), plus what the 2016 peers wrote beside it:
/// - fastjson's type suffixes after numbers (`3L`, `2S`, `1B`, `1.5F`, `1.5D`) and its `Set[...]` / `TreeSet[...]`
///   collections and `new Date(millis)` dates, which it writes with `WriteClassName`;
/// - Python's `NaN`, `Infinity` and `-Infinity`.
///
/// `@type` keys are ordinary keys here; the RPC model ignores them. Nesting is limited to ``maximumDepth`` so a hostile
/// body cannot exhaust the stack.
public enum JSONParser {
    /// The deepest nesting of arrays and objects accepted.
    public static let maximumDepth = 512

    /// Parses the readable bytes of `buffer` (which is not consumed).
    ///
    /// - Throws: ``JSONParseError`` naming the offset and what was wrong.
    public static func parse(_ buffer: ByteBuffer) throws(JSONParseError) -> JSONValue {
        do {
            return try buffer.withUnsafeReadableBytes { bytes in try parse(bytes: bytes) }
        } catch let error as JSONParseError {
            throw error
        } catch {
            throw JSONParseError(offset: 0, reason: "\(error)")
        }
    }

    /// Parses `text`.
    ///
    /// - Throws: ``JSONParseError`` naming the offset and what was wrong.
    public static func parse(_ text: String) throws(JSONParseError) -> JSONValue {
        var text = text
        do {
            return try text.withUTF8 { bytes in try parse(bytes: UnsafeRawBufferPointer(bytes)) }
        } catch let error as JSONParseError {
            throw error
        } catch {
            throw JSONParseError(offset: 0, reason: "\(error)")
        }
    }

    /// Parses the readable bytes of `buffer` as a JSON object and returns its members in order (a later duplicate key
    /// comes later), without building a dictionary: the fast way to read a small envelope such as an RPC request.
    ///
    /// - Returns: the members, or `nil` when the value is valid JSON but not an object.
    /// - Throws: ``JSONParseError``.
    public static func parseMembers(_ buffer: ByteBuffer) throws(JSONParseError) -> [(key: String, value: JSONValue)]? {
        do {
            return try buffer.withUnsafeReadableBytes { bytes -> [(key: String, value: JSONValue)]? in
                var reader = Reader(bytes: bytes)
                reader.skipWhitespace()
                guard reader.index < bytes.count else { throw JSONParseError(offset: 0, reason: "empty body, expected a JSON value") }
                guard bytes[reader.index] == UInt8(ascii: "{") else {
                    _ = try parse(bytes: bytes)  // valid JSON of another kind, or the error that says why not
                    return nil
                }
                let members = try reader.members(depth: 1)
                reader.skipWhitespace()
                guard reader.index == bytes.count else {
                    throw reader.error("unexpected \(reader.describeCurrent()) after the end of the JSON value")
                }
                return members
            }
        } catch let error as JSONParseError {
            throw error
        } catch {
            throw JSONParseError(offset: 0, reason: "\(error)")
        }
    }

    /// Parses a byte buffer.
    ///
    /// - Throws: ``JSONParseError``.
    public static func parse(bytes: UnsafeRawBufferPointer) throws(JSONParseError) -> JSONValue {
        var reader = Reader(bytes: bytes)
        reader.skipWhitespace()
        guard reader.index < bytes.count else { throw JSONParseError(offset: 0, reason: "empty body, expected a JSON value") }
        let value = try reader.value(depth: 0)
        reader.skipWhitespace()
        guard reader.index == bytes.count else {
            throw reader.error("unexpected \(reader.describeCurrent()) after the end of the JSON value")
        }
        return value
    }

    private struct Reader {
        let bytes: UnsafeRawBufferPointer
        var index = 0

        init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

        func error(_ reason: String) -> JSONParseError { JSONParseError(offset: index, reason: reason) }

        func describeCurrent() -> String {
            guard index < bytes.count else { return "end of input" }
            let byte = bytes[index]
            if byte >= 0x20 && byte < 0x7F { return "'\(Character(Unicode.Scalar(byte)))'" }
            return "byte 0x" + String(byte, radix: 16)
        }

        mutating func skipWhitespace() {
            while index < bytes.count {
                switch bytes[index] {
                case UInt8(ascii: " "), UInt8(ascii: "\n"), UInt8(ascii: "\r"), UInt8(ascii: "\t"): index += 1
                default: return
                }
            }
        }

        func startsWith(_ literal: StaticString) -> Bool {
            let count = literal.utf8CodeUnitCount
            guard index + count <= bytes.count else { return false }
            let pointer = literal.utf8Start
            for offset in 0..<count where bytes[index + offset] != pointer[offset] { return false }
            return true
        }

        mutating func value(depth: Int) throws(JSONParseError) -> JSONValue {
            guard index < bytes.count else { throw error("unexpected end of input, expected a value") }
            switch bytes[index] {
            case UInt8(ascii: "{"): return try object(depth: depth + 1)
            case UInt8(ascii: "["): return try array(depth: depth + 1)
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                if startsWith("-Infinity") {
                    index += 9
                    return .double(-.infinity)
                }
                return try number()
            case UInt8(ascii: "t") where startsWith("true"):
                index += 4
                return .bool(true)
            case UInt8(ascii: "f") where startsWith("false"):
                index += 5
                return .bool(false)
            case UInt8(ascii: "n") where startsWith("null"):
                index += 4
                return .null
            case UInt8(ascii: "N") where startsWith("NaN"):
                index += 3
                return .double(.nan)
            case UInt8(ascii: "I") where startsWith("Infinity"):
                index += 8
                return .double(.infinity)
            case UInt8(ascii: "S") where startsWith("Set["):
                index += 3
                return try array(depth: depth + 1)
            case UInt8(ascii: "T") where startsWith("TreeSet["):
                index += 7
                return try array(depth: depth + 1)
            case UInt8(ascii: "n") where startsWith("new Date("):
                index += 9
                skipWhitespace()
                let millis = try number()
                skipWhitespace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: ")") else { throw error("expected ')' closing new Date(") }
                index += 1
                return millis
            default:
                throw error("unexpected \(describeCurrent()), expected a JSON value")
            }
        }

        mutating func object(depth: Int) throws(JSONParseError) -> JSONValue {
            let members = try members(depth: depth)
            var object = [String: JSONValue](minimumCapacity: members.count)
            for (key, value) in members { object[key] = value }  // a repeated key: the last one wins
            return .object(object)
        }

        mutating func members(depth: Int) throws(JSONParseError) -> [(key: String, value: JSONValue)] {
            guard depth <= JSONParser.maximumDepth else { throw error("nesting deeper than \(JSONParser.maximumDepth)") }
            index += 1
            var members: [(key: String, value: JSONValue)] = []
            skipWhitespace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
                index += 1
                return members
            }
            members.reserveCapacity(6)
            while true {
                skipWhitespace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else {
                    throw error("unexpected \(describeCurrent()), expected a quoted member name")
                }
                let key = try string()
                skipWhitespace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else {
                    throw error("unexpected \(describeCurrent()), expected ':' after member name \"\(key)\"")
                }
                index += 1
                skipWhitespace()
                members.append((key, try value(depth: depth)))
                skipWhitespace()
                guard index < bytes.count else { throw error("unexpected end of input inside an object") }
                switch bytes[index] {
                case UInt8(ascii: ","): index += 1
                case UInt8(ascii: "}"):
                    index += 1
                    return members
                default: throw error("unexpected \(describeCurrent()), expected ',' or '}' in an object")
                }
            }
        }

        mutating func array(depth: Int) throws(JSONParseError) -> JSONValue {
            guard depth <= JSONParser.maximumDepth else { throw error("nesting deeper than \(JSONParser.maximumDepth)") }
            index += 1
            var items: [JSONValue] = []
            skipWhitespace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
                index += 1
                return .array(items)
            }
            while true {
                skipWhitespace()
                items.append(try value(depth: depth))
                skipWhitespace()
                guard index < bytes.count else { throw error("unexpected end of input inside an array") }
                switch bytes[index] {
                case UInt8(ascii: ","): index += 1
                case UInt8(ascii: "]"):
                    index += 1
                    return .array(items)
                default: throw error("unexpected \(describeCurrent()), expected ',' or ']' in an array")
                }
            }
        }

        mutating func string() throws(JSONParseError) -> String {
            index += 1  // opening quote
            let start = index
            // Fast path: no escapes, the bytes are the string.
            while index < bytes.count {
                let byte = bytes[index]
                if byte == UInt8(ascii: "\"") {
                    let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
                    index += 1
                    return text
                }
                if byte == UInt8(ascii: "\\") { break }
                index += 1
            }
            guard index < bytes.count else { throw JSONParseError(offset: start - 1, reason: "unterminated string") }
            var output: [UInt8] = Array(UnsafeRawBufferPointer(rebasing: bytes[start..<index]))
            while index < bytes.count {
                let byte = bytes[index]
                switch byte {
                case UInt8(ascii: "\""):
                    index += 1
                    return String(decoding: output, as: UTF8.self)
                case UInt8(ascii: "\\"):
                    index += 1
                    guard index < bytes.count else { break }
                    let escape = bytes[index]
                    index += 1
                    switch escape {
                    case UInt8(ascii: "\""): output.append(UInt8(ascii: "\""))
                    case UInt8(ascii: "\\"): output.append(UInt8(ascii: "\\"))
                    case UInt8(ascii: "/"): output.append(UInt8(ascii: "/"))
                    case UInt8(ascii: "b"): output.append(0x08)
                    case UInt8(ascii: "f"): output.append(0x0C)
                    case UInt8(ascii: "n"): output.append(0x0A)
                    case UInt8(ascii: "r"): output.append(0x0D)
                    case UInt8(ascii: "t"): output.append(0x09)
                    case UInt8(ascii: "u"):
                        let scalar = try unicodeEscape()
                        output.append(contentsOf: String(Character(scalar)).utf8)
                    default:
                        index -= 1
                        throw error("invalid escape '\\\(Character(Unicode.Scalar(escape)))' in a string")
                    }
                default:
                    output.append(byte)
                    index += 1
                }
            }
            throw JSONParseError(offset: start - 1, reason: "unterminated string")
        }

        /// Reads the four hex digits after `\u` (and a low surrogate after a high one).
        mutating func unicodeEscape() throws(JSONParseError) -> Unicode.Scalar {
            let high = try hex4()
            if (0xD800...0xDBFF).contains(high) {
                if startsWith("\\u") {
                    let saved = index
                    index += 2
                    let low = try hex4()
                    if (0xDC00...0xDFFF).contains(low) {
                        let value = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                        return Unicode.Scalar(value) ?? "\u{FFFD}"
                    }
                    index = saved
                }
                return "\u{FFFD}"  // a lone surrogate cannot be represented
            }
            return Unicode.Scalar(high) ?? "\u{FFFD}"
        }

        mutating func hex4() throws(JSONParseError) -> UInt32 {
            guard index + 4 <= bytes.count else { throw error("truncated \\u escape") }
            var value: UInt32 = 0
            for _ in 0..<4 {
                let byte = bytes[index]
                let digit: UInt8
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
                case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
                default: throw error("invalid hex digit in a \\u escape")
                }
                value = value << 4 | UInt32(digit)
                index += 1
            }
            return value
        }

        mutating func number() throws(JSONParseError) -> JSONValue {
            let start = index
            var negative = false
            if bytes[index] == UInt8(ascii: "-") {
                negative = true
                index += 1
            }
            let digitsStart = index
            var magnitude: UInt64 = 0
            var overflow = false
            while index < bytes.count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") {
                let (times10, o1) = magnitude.multipliedReportingOverflow(by: 10)
                let (sum, o2) = times10.addingReportingOverflow(UInt64(bytes[index] - UInt8(ascii: "0")))
                overflow = overflow || o1 || o2
                magnitude = sum
                index += 1
            }
            guard index > digitsStart else { throw error("expected digits in a number") }
            var isInteger = true
            if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
                isInteger = false
                index += 1
                let fractionStart = index
                while index < bytes.count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") { index += 1 }
                guard index > fractionStart else { throw error("expected digits after the decimal point") }
            }
            if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
                isInteger = false
                index += 1
                if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
                let exponentStart = index
                while index < bytes.count, bytes[index] >= UInt8(ascii: "0"), bytes[index] <= UInt8(ascii: "9") { index += 1 }
                guard index > exponentStart else { throw error("expected digits in the exponent") }
            }
            let end = index
            // fastjson's WriteClassName marks the Java type of a number in an Object slot: 3L, 2S, 1B, 1.5F, 1.5D.
            if index < bytes.count {
                switch bytes[index] {
                case UInt8(ascii: "L"), UInt8(ascii: "S"), UInt8(ascii: "B"), UInt8(ascii: "F"), UInt8(ascii: "D"): index += 1
                default: break
                }
            }
            if isInteger && !overflow {
                if negative {
                    if magnitude <= UInt64(Int64.max) { return .int(-Int64(magnitude)) }
                    if magnitude == UInt64(Int64.max) + 1 { return .int(Int64.min) }
                } else if magnitude <= UInt64(Int64.max) {
                    return .int(Int64(magnitude))
                }
            }
            let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<end]), as: UTF8.self)
            guard let double = Double(text) else { throw JSONParseError(offset: start, reason: "number '\(text)' out of range") }
            return .double(double)
        }
    }
}
