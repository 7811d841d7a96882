/// Byte-level ASCII helpers for code that reads header blocks in place: the parser, and writers of records kept in wire
/// form (``OutgoingRecordEncoder``). Public and inlinable because such writers live in other modules and call these
/// for every header line: a `package` function is not inlined across modules, and as a call each costs more than
/// the comparison it makes.
public enum ASCIIBytes {
    /// `byte` with `A`–`Z` lower-cased.
    @inlinable @inline(__always)
    public static func lower(_ byte: UInt8) -> UInt8 {
        (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z")) ? byte | 0x20 : byte
    }

    /// The value of the hex digit `byte` (`0`–`9`, `a`–`f`, `A`–`F`), or `nil`: for `%XX` escapes.
    @inlinable
    public static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// Whether `bytes` spell `lowercase`, in any case.
    ///
    /// Inlined (as is ``startsWithIgnoringCase(_:_:)``): the parser compares every header name against constants,
    /// and as calls these cost more than the comparisons they make.
    @inlinable @inline(__always)
    public static func equalsIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ lowercase: StaticString) -> Bool {
        guard bytes.count == lowercase.utf8CodeUnitCount else { return false }
        return startsWithIgnoringCase(bytes, lowercase)
    }

    /// Whether `bytes` begin with `lowercase`, in any case.
    @inlinable @inline(__always)
    public static func startsWithIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ lowercase: StaticString) -> Bool {
        let prefix = UnsafeRawBufferPointer(start: lowercase.utf8Start, count: lowercase.utf8CodeUnitCount)
        guard bytes.count >= prefix.count else { return false }
        for offset in 0..<prefix.count where lower(bytes[offset]) != prefix[offset] { return false }
        return true
    }
}
