/// The zbus fields carried by a request URL, for clients that send no `cmd` header (browsers, curl, ab).
///
/// - `/?cmd=test`, `/?cmd=produce&mq=Q`: query keys `cmd`, `mq`, `module`, `method`, `params`.
/// - `/Q`, `/Q/method`, `/Q/module/method`: path segments name the MQ, then the method or the module and method.
/// - A query token without `=` is the params (`/Q/plus?1,2`).
///
/// Each segment and value is percent-decoded on its own, so an encoded `/` or `?` stays data.
public struct UrlRequest: Sendable, Equatable {
    /// The command.
    public var cmd: String?
    /// The MQ name.
    public var mq: String?
    /// The RPC module.
    public var module: String?
    /// The RPC method.
    public var method: String?
    /// The RPC params, as written (for example `1,2` or `"a"`).
    public var params: String?
    /// Every query parameter, decoded.
    public var query: [String: String] = [:]
    /// The decoded path segments.
    public var pathSegments: [String] = []

    /// Parses a request string (`/path?query`).
    public init(uri: String) {
        var uri = uri
        uri.withUTF8 { bytes in
            let queryStart = bytes.firstIndex(of: UInt8(ascii: "?"))
            let pathEnd = queryStart ?? bytes.count
            var segmentStart = 0
            for index in 0...pathEnd where index == pathEnd || bytes[index] == UInt8(ascii: "/") {
                if index > segmentStart {
                    pathSegments.append(Self.percentDecode(UnsafeBufferPointer(rebasing: bytes[segmentStart..<index]), plusIsSpace: false))
                }
                segmentStart = index + 1
            }
            guard let queryStart else { return }
            var pairStart = queryStart + 1
            for index in pairStart...bytes.count where index == bytes.count || bytes[index] == UInt8(ascii: "&") {
                defer { pairStart = index + 1 }
                guard index > pairStart else { continue }
                let pair = UnsafeBufferPointer(rebasing: bytes[pairStart..<index])
                guard let equals = pair.firstIndex(of: UInt8(ascii: "=")) else {
                    params = Self.percentDecode(pair, plusIsSpace: true)
                    continue
                }
                let key = Self.percentDecode(UnsafeBufferPointer(rebasing: pair[pair.startIndex..<equals]), plusIsSpace: true)
                let value = Self.percentDecode(UnsafeBufferPointer(rebasing: pair[(equals + 1)..<pair.endIndex]), plusIsSpace: true)
                query[key] = value
            }
        }
        switch pathSegments.count {
        case 0: break
        case 1: mq = pathSegments[0]
        case 2: mq = pathSegments[0]; method = pathSegments[1]
        default: mq = pathSegments[0]; module = pathSegments[1]; method = pathSegments[2]
        }
        if let value = query["cmd"] { cmd = value }
        if let value = query["mq"] { mq = value }
        if let value = query["module"] { module = value }
        if let value = query["method"] { method = value }
        if let value = query["params"] { params = value }
    }

    /// Decodes `%XX` escapes (invalid escapes are kept as written) and, in query strings, `+` as a space.
    public static func percentDecode(_ text: Substring, plusIsSpace: Bool) -> String {
        var text = text
        return text.withUTF8 { percentDecode($0, plusIsSpace: plusIsSpace) }
    }

    static func percentDecode(_ utf8: UnsafeBufferPointer<UInt8>, plusIsSpace: Bool) -> String {
        guard utf8.contains(where: { $0 == UInt8(ascii: "%") || (plusIsSpace && $0 == UInt8(ascii: "+")) }) else {
            return String(decoding: utf8, as: UTF8.self)
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(utf8.count)
        var index = 0
        while index < utf8.count {
            let byte = utf8[index]
            if byte == UInt8(ascii: "%"), index + 2 < utf8.count, let high = ASCIIBytes.hexValue(utf8[index + 1]), let low = ASCIIBytes.hexValue(utf8[index + 2]) {
                bytes.append(high << 4 | low)
                index += 3
            } else {
                bytes.append(plusIsSpace && byte == UInt8(ascii: "+") ? UInt8(ascii: " ") : byte)
                index += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension Message {
    /// The zbus fields of this message's request URL (empty for a status-line message).
    public var urlRequest: UrlRequest { UrlRequest(uri: uri ?? "/") }
}
