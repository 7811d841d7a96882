import ZbusKernel

/// The headers an `http` adapter never forwards either way: zbus's control headers (the service must not see them, and
/// the caller's reply must not carry the service's), and HTTP's framing and hop-by-hop headers (each side has its own
/// connection).
///
/// Looked up for every header of every call in both directions, so by length first and then by bytes, with no hashing
/// and no string built: a `Set<String>` lookup hashed each name with SipHash, several thousand instructions a call.
enum ReservedHeaders {
    /// Every reserved name, lower-case.
    static let names: [String] = [
        "cmd", "mq", "id", "rawid", "sender", "recver", "server", "remote-addr", "ack", "token", "topic", "key", "key_group",
        "timeout", "reply_code", "http-method", "path", "encoding", "original_id", "original_url", "original_mq",
        "content-length", "connection", "keep-alive", "transfer-encoding", "host", "expect", "upgrade", "te", "trailer",
    ]

    /// What a response header is to the reader: a framing header it reads, another reserved one it drops, or one the
    /// caller gets.
    enum Role {
        case contentLength
        case transferEncoding
        case connection
        case reserved
        case forwarded
    }

    /// The role of the header `name` as received (any case).
    static func role(_ name: UnsafeRawBufferPointer) -> Role {
        switch name.count {
        case 14 where ASCIIBytes.equalsIgnoringCase(name, "content-length"): return .contentLength
        case 17 where ASCIIBytes.equalsIgnoringCase(name, "transfer-encoding"): return .transferEncoding
        case 10 where ASCIIBytes.equalsIgnoringCase(name, "connection"): return .connection
        default: return isReserved(name) ? .reserved : .forwarded
        }
    }

    /// Whether `name` (a header name, any case) is reserved.
    static func contains(_ name: String) -> Bool {
        ASCIIBytes.withUTF8(of: name) { isReserved(UnsafeRawBufferPointer($0)) }
    }

    /// The lookup itself: by length, then against each name of that length (``names`` lists the same names; a test
    /// holds the two together).
    @inline(__always)
    private static func isReserved(_ name: UnsafeRawBufferPointer) -> Bool {
        switch name.count {
        case 2: return named(name, "mq") || named(name, "id") || named(name, "te")
        case 3: return named(name, "cmd") || named(name, "ack") || named(name, "key")
        case 4: return named(name, "path") || named(name, "host")
        case 5: return named(name, "rawid") || named(name, "token") || named(name, "topic")
        case 6: return named(name, "sender") || named(name, "recver") || named(name, "server") || named(name, "expect")
        case 7: return named(name, "timeout") || named(name, "upgrade") || named(name, "trailer")
        case 8: return named(name, "encoding")
        case 9: return named(name, "key_group")
        case 10: return named(name, "reply_code") || named(name, "keep-alive") || named(name, "connection")
        case 11:
            return named(name, "remote-addr") || named(name, "http-method") || named(name, "original_id")
                || named(name, "original_mq")
        case 12: return named(name, "original_url")
        case 14: return named(name, "content-length")
        case 17: return named(name, "transfer-encoding")
        default: return false
        }
    }

    /// `name` is `candidate` in any case; lengths are equal by the switch above. Inlined into each case: called, it
    /// cost more than the comparison.
    @inline(__always)
    private static func named(_ name: UnsafeRawBufferPointer, _ candidate: StaticString) -> Bool {
        for offset in 0..<name.count where ASCIIBytes.lower(name[offset]) != candidate.utf8Start[offset] { return false }
        return true
    }
}
