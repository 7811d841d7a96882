/// Why a codec could not read or write an RPC message.
public enum RpcCodecError: Error, Sendable, CustomStringConvertible {
    /// The body is not JSON.
    case notJSON(codec: String, JSONParseError)
    /// The body is JSON but not an object.
    case notAnObject(codec: String, found: String)
    /// A field of the JSON object has the wrong type.
    case wrongFieldType(codec: String, field: String, expected: String, found: String)
    /// The body's charset (`encoding` header) is not one this codec can read.
    case unsupportedCharset(codec: String, charset: String)
    /// The body is not valid in its charset.
    case undecodableBody(codec: String, charset: String)
    /// The codec cannot carry this request or response.
    case unsupported(codec: String, reason: String)

    /// What went wrong, in one line.
    public var description: String {
        switch self {
        case .notJSON(let codec, let error):
            return "\(codec) codec: the body is not JSON: \(error) (send {\"module\":..,\"method\":..,\"params\":[..]})"
        case .notAnObject(let codec, let found):
            return "\(codec) codec: the body must be a JSON object such as {\"method\":\"echo\",\"params\":[\"hi\"]}, found \(found)"
        case .wrongFieldType(let codec, let field, let expected, let found):
            return "\(codec) codec: field '\(field)' must be \(expected), found \(found)"
        case .unsupportedCharset(let codec, let charset):
            return "\(codec) codec: charset '\(charset)' (encoding header) is not supported; use UTF-8, ISO-8859-1, US-ASCII or UTF-16"
        case .undecodableBody(let codec, let charset):
            return "\(codec) codec: the body is not valid \(charset)"
        case .unsupported(let codec, let reason):
            return "\(codec) codec: \(reason)"
        }
    }
}
