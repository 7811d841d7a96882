import Foundation
import NIOCore
import ZbusKernel

/// Why a JSON value could not become the Swift type asked for (or the other way round).
public struct RpcValueConversionError: Error, Sendable, CustomStringConvertible {
    /// The Swift type wanted.
    public let expected: String
    /// The JSON value found (shortened), or the value that could not be encoded.
    public let found: String
    /// Detail from the decoder, when there is some.
    public let detail: String?

    /// What went wrong, in one line.
    public var description: String {
        "expected \(expected), got \(found)" + (detail.map { " (\($0))" } ?? "")
    }
}

/// Converts between Swift values and ``JSONValue`` for RPC parameters and results.
///
/// Common types (integers, floating point, `Bool`, `String`, `JSONValue`, optionals of them) convert directly; any other
/// `Codable` type goes through Foundation's JSON coders. Conversions to Swift are as lenient as zbus 6's Java side
/// (fastjson `TypeUtils.cast`): a number may arrive as a string (`"42"` for an `Int`), a whole-valued double may fill an
/// integer, and a `String` parameter accepts a number or a boolean as its text. Unknown object keys, such as Java's
/// `@type`, are ignored.
public enum RpcValueCoding {
    /// `value` as a `T`.
    ///
    /// - Throws: ``RpcValueConversionError`` saying what was expected and what came.
    public static func decode<T: Decodable>(_ type: T.Type, from value: JSONValue) throws(RpcValueConversionError) -> T {
        // The common types first, compared by metatype and reinterpreted without a dynamic cast (this runs for every
        // argument and result).
        if T.self == Int.self { return unsafeBitCast(try integer(value, as: Int.self), to: T.self) }
        if T.self == String.self { return unsafeBitCast(try string(value), to: T.self) }
        if T.self == JSONValue.self { return value as! T }
        if T.self == Double.self { return unsafeBitCast(try double(value), to: T.self) }
        if T.self == Bool.self { return unsafeBitCast(try bool(value), to: T.self) }
        if T.self == Int64.self { return unsafeBitCast(try integer(value, as: Int64.self), to: T.self) }
        if T.self == Int32.self { return try integer(value, as: Int32.self) as! T }
        if T.self == Int16.self { return try integer(value, as: Int16.self) as! T }
        if T.self == Int8.self { return try integer(value, as: Int8.self) as! T }
        if T.self == UInt.self { return try integer(value, as: UInt.self) as! T }
        if T.self == UInt64.self { return try integer(value, as: UInt64.self) as! T }
        if T.self == UInt32.self { return try integer(value, as: UInt32.self) as! T }
        if T.self == UInt16.self { return try integer(value, as: UInt16.self) as! T }
        if T.self == UInt8.self { return try integer(value, as: UInt8.self) as! T }
        if T.self == Float.self { return Float(try double(value)) as! T }
        if T.self == [JSONValue].self, case .array(let items) = value { return items as! T }
        if let optional = T.self as? any OptionalDecodable.Type {
            return try optional.decodeWrapped(from: value) as! T
        }
        // Everything else: through Foundation, which knows every Decodable.
        var buffer = ByteBuffer()
        JSONWriter.write(value, into: &buffer)
        do {
            return try JSONDecoder().decode(T.self, from: Data(buffer.readableBytesView))
        } catch {
            throw RpcValueConversionError(expected: typeName(T.self), found: shortened(value), detail: describe(error))
        }
    }

    /// `value` as JSON.
    ///
    /// - Throws: ``RpcValueConversionError`` when the value's `encode(to:)` fails.
    public static func encode<T: Encodable>(_ value: T) throws(RpcValueConversionError) -> JSONValue {
        if T.self == Int.self { return .int(Int64(unsafeBitCast(value, to: Int.self))) }
        if T.self == String.self { return .string(unsafeBitCast(value, to: String.self)) }
        switch value {
        case let json as JSONValue: return json
        case let number as Int: return .int(Int64(number))
        case let text as String: return .string(text)
        case let number as Double: return .double(number)
        case let flag as Bool: return .bool(flag)
        case let number as Int64: return .int(number)
        case let number as Int32: return .int(Int64(number))
        case let number as Int16: return .int(Int64(number))
        case let number as Int8: return .int(Int64(number))
        case let number as UInt8: return .int(Int64(number))
        case let number as UInt16: return .int(Int64(number))
        case let number as UInt32: return .int(Int64(number))
        case let number as UInt where number <= UInt(Int64.max): return .int(Int64(number))
        case let number as UInt64 where number <= UInt64(Int64.max): return .int(Int64(number))
        case let number as Float: return .double(Double(number))
        case let items as [JSONValue]: return .array(items)
        default:
            if let optional = value as? any OptionalEncodable {
                return try optional.encodeWrapped()
            }
            do {
                let data = try JSONEncoder().encode(value)
                return try data.withUnsafeBytes { bytes in try JSONParser.parse(bytes: bytes) }
            } catch {
                throw RpcValueConversionError(expected: "a JSON-encodable \(typeName(T.self))", found: "\(value)", detail: describe(error))
            }
        }
    }

    /// The name a catalogue shows for `type` (`Int`, `[String]`, `User?`).
    public static func typeName(_ type: Any.Type) -> String {
        String(describing: type)
    }

    /// `value` shortened for an error message.
    static func shortened(_ value: JSONValue) -> String {
        let text = JSONWriter.text(of: value)
        return text.count > 80 ? String(text.prefix(77)) + "..." : text
    }

    private static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context),
            DecodingError.keyNotFound(_, let context), DecodingError.dataCorrupted(let context):
            let path = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
            return (path.isEmpty ? "" : "at \(path): ") + context.debugDescription
        default:
            return "\(error)"
        }
    }

    private static func integer<I: FixedWidthInteger>(_ value: JSONValue, as type: I.Type) throws(RpcValueConversionError) -> I {
        switch value {
        case .int(let number):
            if let result = I(exactly: number) { return result }
        case .double(let number):
            if let result = I(exactly: number) { return result }
        case .string(let text):
            let trimmed = text.trimmingCharacters(in: .whitespaces)
            if let result = I(trimmed) { return result }
            if let number = Double(trimmed), let result = I(exactly: number) { return result }
        default:
            break
        }
        throw RpcValueConversionError(expected: typeName(I.self), found: shortened(value), detail: nil)
    }

    private static func double(_ value: JSONValue) throws(RpcValueConversionError) -> Double {
        switch value {
        case .int(let number): return Double(number)
        case .double(let number): return number
        case .string(let text):
            if let number = Double(text.trimmingCharacters(in: .whitespaces)) { return number }
        default: break
        }
        throw RpcValueConversionError(expected: "Double", found: shortened(value), detail: nil)
    }

    private static func bool(_ value: JSONValue) throws(RpcValueConversionError) -> Bool {
        switch value {
        case .bool(let flag): return flag
        case .int(let number) where number == 0 || number == 1: return number == 1
        case .string(let text):
            switch text.lowercased() {
            case "true", "1": return true
            case "false", "0": return false
            default: break
            }
        default: break
        }
        throw RpcValueConversionError(expected: "Bool", found: shortened(value), detail: nil)
    }

    private static func string(_ value: JSONValue) throws(RpcValueConversionError) -> String {
        switch value {
        case .string(let text): return text
        case .int, .double, .bool: return JSONWriter.text(of: value)
        default: throw RpcValueConversionError(expected: "String", found: shortened(value), detail: nil)
        }
    }
}

/// Lets the converter reach the wrapped type of an `Optional` without knowing it statically.
protocol OptionalDecodable {
    static func decodeWrapped(from value: JSONValue) throws(RpcValueConversionError) -> Self
}

extension Optional: OptionalDecodable where Wrapped: Decodable {
    static func decodeWrapped(from value: JSONValue) throws(RpcValueConversionError) -> Self {
        if case .null = value { return nil }
        return .some(try RpcValueCoding.decode(Wrapped.self, from: value))
    }
}

/// Lets the converter reach the wrapped value of an `Optional`.
protocol OptionalEncodable {
    func encodeWrapped() throws(RpcValueConversionError) -> JSONValue
}

extension Optional: OptionalEncodable where Wrapped: Encodable {
    func encodeWrapped() throws(RpcValueConversionError) -> JSONValue {
        switch self {
        case .none: return .null
        case .some(let wrapped): return try RpcValueCoding.encode(wrapped)
        }
    }
}
