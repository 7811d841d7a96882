/// Byte-level ASCII helpers shared by the parser and the MQ module's delivery writer, which both read header blocks in place.
package enum ASCIIBytes {
    /// `byte` with `A`–`Z` lower-cased.
    @inlinable @inline(__always)
    package static func lower(_ byte: UInt8) -> UInt8 {
        (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z")) ? byte | 0x20 : byte
    }

    /// Whether `bytes` spell `lowercase`, in any case.
    ///
    /// Inlined (as is ``startsWithIgnoringCase(_:_:)``): the parser compares every header name against constants,
    /// and as calls these cost more than the comparisons they make.
    @inlinable @inline(__always)
    package static func equalsIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ lowercase: StaticString) -> Bool {
        guard bytes.count == lowercase.utf8CodeUnitCount else { return false }
        return startsWithIgnoringCase(bytes, lowercase)
    }

    /// Whether `bytes` begin with `lowercase`, in any case.
    @inlinable @inline(__always)
    package static func startsWithIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ lowercase: StaticString) -> Bool {
        let prefix = UnsafeRawBufferPointer(start: lowercase.utf8Start, count: lowercase.utf8CodeUnitCount)
        guard bytes.count >= prefix.count else { return false }
        for offset in 0..<prefix.count where lower(bytes[offset]) != prefix[offset] { return false }
        return true
    }
}
