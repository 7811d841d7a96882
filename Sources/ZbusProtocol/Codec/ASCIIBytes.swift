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

    /// Whether `byte` is an RFC 9110 token character (`!#$%&'*+-.^_`|~`, digits, letters): two 64-bit masks over the
    /// ASCII range, one shift and test per byte instead of a chain of comparisons (every header name of every message
    /// is checked).
    @inlinable @inline(__always)
    public static func isTokenByte(_ byte: UInt8) -> Bool {
        let lowMask: UInt64 = 0x03FF_6CFA_0000_0000  // bytes 0...63
        let highMask: UInt64 = 0x57FF_FFFF_C7FF_FFFE  // bytes 64...127
        if byte < 64 { return (lowMask >> UInt64(byte)) & 1 == 1 }
        if byte < 128 { return (highMask >> UInt64(byte - 64)) & 1 == 1 }
        return false
    }

    /// Whether `bytes` hold a byte a header value may not (RFC 9110 5.5): a control byte other than a tab, or DEL.
    ///
    /// Eight bytes at a time: a word has a byte below 0x20 exactly when `(w - 0x20…) & ~w & 0x80…` is not zero, and a
    /// DEL exactly when the same test for zero holds on `w ^ 0x7F…` (borrows can flag wrong lanes, never a wrong
    /// word). Only a word so flagged, which for a valid value means one holding a tab, is looked at byte by byte.
    /// Every value of every header is checked, and byte by byte this was a tenth of parsing a head.
    @inlinable
    public static func hasControlBytes(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard let base = bytes.baseAddress else { return false }
        let count = bytes.count
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highBits: UInt64 = 0x8080_8080_8080_8080
        var offset = 0
        while offset + 8 <= count {
            let word = base.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
            let below = (word &- ones &* 0x20) & ~word & highBits
            let delete = word ^ (ones &* 0x7F)
            if (below | ((delete &- ones) & ~delete & highBits)) != 0,
               isControl(UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + 8])) {
                return true
            }
            offset += 8
        }
        return isControl(UnsafeRawBufferPointer(rebasing: bytes[offset...]))
    }

    /// ``hasControlBytes(_:)`` byte by byte, for the few bytes a word test cannot settle.
    @inlinable
    static func isControl(_ bytes: UnsafeRawBufferPointer) -> Bool {
        for byte in bytes where (byte < 0x20 && byte != 0x09) || byte == 0x7F { return true }
        return false
    }

    /// Calls `body` with the UTF-8 bytes of `text`, read in place: `String.withUTF8` is mutating, and the copy of a
    /// string it needs is a retain and a release, for each header of each message written.
    @inlinable @inline(__always)
    public static func withUTF8<Result>(of text: String, _ body: (UnsafeBufferPointer<UInt8>) throws -> Result) rethrows -> Result {
        if let result = try text.utf8.withContiguousStorageIfAvailable(body) { return result }
        var text = text  // a bridged string, without contiguous UTF-8 (not on Linux)
        return try text.withUTF8(body)
    }

    /// The lower-case name for the header name `bytes` (any case): a literal for the names HTTP peers send most, in
    /// requests or responses (no string made for them), else a new string, lower-cased in the same pass.
    public static func lowercasedName(_ bytes: UnsafeRawBufferPointer) -> String {
        if let common = commonName(bytes) { return common }
        guard bytes.contains(where: { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") }) else {
            return String(decoding: bytes, as: UTF8.self)
        }
        return String(unsafeUninitializedCapacity: bytes.count) { target in
            for offset in 0..<bytes.count { target[offset] = lower(bytes[offset]) }
            return bytes.count
        }
    }

    /// The literal for a frequent header name (any case), or `nil`.
    private static func commonName(_ name: UnsafeRawBufferPointer) -> String? {
        switch name.count {
        case 4:
            if equalsIgnoringCase(name, "host") { return "host" }
            if equalsIgnoringCase(name, "date") { return "date" }
            if equalsIgnoringCase(name, "etag") { return "etag" }
            if equalsIgnoringCase(name, "vary") { return "vary" }
        case 6:
            if equalsIgnoringCase(name, "accept") { return "accept" }
            if equalsIgnoringCase(name, "pragma") { return "pragma" }
        case 7:
            if equalsIgnoringCase(name, "expires") { return "expires" }
        case 8:
            if equalsIgnoringCase(name, "location") { return "location" }
        case 10:
            if equalsIgnoringCase(name, "user-agent") { return "user-agent" }
            if equalsIgnoringCase(name, "set-cookie") { return "set-cookie" }
        case 12:
            if equalsIgnoringCase(name, "content-type") { return "content-type" }
            if equalsIgnoringCase(name, "x-powered-by") { return "x-powered-by" }
        case 13:
            if equalsIgnoringCase(name, "last-modified") { return "last-modified" }
            if equalsIgnoringCase(name, "accept-ranges") { return "accept-ranges" }
            if equalsIgnoringCase(name, "cache-control") { return "cache-control" }
        case 15:
            if equalsIgnoringCase(name, "accept-encoding") { return "accept-encoding" }
        case 16:
            if equalsIgnoringCase(name, "content-encoding") { return "content-encoding" }
        default:
            break
        }
        return nil
    }
}
