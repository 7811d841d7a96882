import ZbusKernel

/// The codecs a service speaks: a default one, and others a request picks by its `content-type`.
///
/// ```swift
/// let codecs = RpcCodecSet(default: RawRpcCodec(), others: [JsonRpcCodec()])
/// codecs.codec(for: message)   // JSON for `content-type: application/json`, raw for anything else
/// ```
public struct RpcCodecSet: Sendable {
    /// The codec used when a request's `content-type` names none of the codecs.
    public let defaultCodec: any RpcCodec
    /// Every codec, by name.
    public let codecsByName: [String: any RpcCodec]
    private let byContentType: [String: any RpcCodec]

    /// Creates a set.
    ///
    /// - Parameters:
    ///   - defaultCodec: used for requests without a known `content-type` (and for curl's form encoding).
    ///   - others: codecs a request may select with one of their ``RpcCodec/contentTypes``.
    public init(default defaultCodec: any RpcCodec, others: [any RpcCodec] = []) {
        self.defaultCodec = defaultCodec
        var byName: [String: any RpcCodec] = [:]
        var byContentType: [String: any RpcCodec] = [:]
        for codec in others + [defaultCodec] {
            byName[codec.name] = codec
            for type in codec.contentTypes { byContentType[type.lowercased()] = codec }
        }
        self.codecsByName = byName
        self.byContentType = byContentType
    }

    /// JSON by default, raw for `application/octet-stream`.
    public static var standard: RpcCodecSet { RpcCodecSet(default: JsonRpcCodec(), others: [RawRpcCodec()]) }

    /// The codec for `message`: the one its `content-type` names (parameters such as `; charset=utf-8` ignored), else
    /// the default.
    public func codec(for message: Message) -> any RpcCodec {
        guard !byContentType.isEmpty, let contentType = message.headers.value(lowercased: HeaderName.contentType) else { return defaultCodec }
        if let codec = byContentType[contentType] { return codec }  // the common case: exactly as a codec writes it
        var mediaType = Substring(contentType)
        if let semicolon = mediaType.firstIndex(of: ";") { mediaType = mediaType[..<semicolon] }
        while let first = mediaType.first, first == " " || first == "\t" { mediaType = mediaType.dropFirst() }
        while let last = mediaType.last, last == " " || last == "\t" { mediaType = mediaType.dropLast() }
        return byContentType[mediaType.lowercased()] ?? defaultCodec
    }

    /// The codec named `name`.
    public func codec(named name: String) -> (any RpcCodec)? { codecsByName[name] }
}
