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

    /// The names by their length (index), as bytes.
    private static let byLength: [[[UInt8]]] = {
        var table = [[[UInt8]]](repeating: [], count: 18)
        for name in names { table[name.utf8.count].append(Array(name.utf8)) }
        return table
    }()

    /// The role of the header `name` as received (any case).
    static func role(_ name: UnsafeRawBufferPointer) -> Role {
        switch name.count {
        case 14 where ASCIIBytes.equalsIgnoringCase(name, "content-length"): return .contentLength
        case 17 where ASCIIBytes.equalsIgnoringCase(name, "transfer-encoding"): return .transferEncoding
        case 10 where ASCIIBytes.equalsIgnoringCase(name, "connection"): return .connection
        default: return isReserved(name, foldingCase: true) ? .reserved : .forwarded
        }
    }

    /// Whether `name` (a header name of a message, lower-case) is reserved.
    static func contains(_ name: String) -> Bool {
        var name = name
        return name.withUTF8 { isReserved(UnsafeRawBufferPointer($0), foldingCase: false) }
    }

    private static func isReserved(_ name: UnsafeRawBufferPointer, foldingCase: Bool) -> Bool {
        guard name.count < byLength.count else { return false }
        for candidate in byLength[name.count] {
            var same = true
            for offset in 0..<candidate.count {
                let byte = foldingCase ? ASCIIBytes.lower(name[offset]) : name[offset]
                if byte != candidate[offset] {
                    same = false
                    break
                }
            }
            if same { return true }
        }
        return false
    }
}
