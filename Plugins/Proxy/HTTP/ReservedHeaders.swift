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
        var name = name
        return name.withUTF8 { isReserved(UnsafeRawBufferPointer($0)) }
    }

    /// The lookup itself: by length, then against each name of that length (``names`` lists the same names; a test
    /// holds the two together).
    @inline(__always)
    private static func isReserved(_ name: UnsafeRawBufferPointer) -> Bool {
        func named(_ candidate: StaticString) -> Bool { ASCIIBytes.equalsIgnoringCase(name, candidate) }
        switch name.count {
        case 2: return named("mq") || named("id") || named("te")
        case 3: return named("cmd") || named("ack") || named("key")
        case 4: return named("path") || named("host")
        case 5: return named("rawid") || named("token") || named("topic")
        case 6: return named("sender") || named("recver") || named("server") || named("expect")
        case 7: return named("timeout") || named("upgrade") || named("trailer")
        case 8: return named("encoding")
        case 9: return named("key_group")
        case 10: return named("reply_code") || named("keep-alive") || named("connection")
        case 11: return named("remote-addr") || named("http-method") || named("original_id") || named("original_mq")
        case 12: return named("original_url")
        case 14: return named("content-length")
        case 17: return named("transfer-encoding")
        default: return false
        }
    }
}
