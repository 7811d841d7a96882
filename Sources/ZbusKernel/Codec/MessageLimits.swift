/// Size limits the decoder enforces on every inbound message.
public struct MessageLimits: Sendable, Equatable {
    /// The largest header block (start line, headers and the blank line) accepted; larger gets 431.
    public var maxHeaderBytes: Int
    /// The largest body accepted; a larger `content-length` gets 413 before any body byte is read.
    public var maxBodyBytes: Int

    /// The defaults: 64 KiB of headers, 32 MiB of body.
    public static let `default` = MessageLimits(maxHeaderBytes: 64 * 1024, maxBodyBytes: 32 * 1024 * 1024)

    /// Creates limits.
    public init(maxHeaderBytes: Int, maxBodyBytes: Int) {
        self.maxHeaderBytes = maxHeaderBytes
        self.maxBodyBytes = maxBodyBytes
    }
}

/// Why an inbound byte stream could not be decoded into a message. Each case maps to the 4xx status the node answers
/// with before it closes the connection (the stream cannot be resynchronised after a framing error).
public enum MessageDecodingError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The header block exceeded the limit.
    case headerTooLarge(limit: Int)
    /// The declared body length exceeded the limit.
    case bodyTooLarge(declared: String, limit: Int)
    /// The first line is neither a request line nor a status line.
    case malformedStartLine(String)
    /// A header line is not `name: value`, or contains control characters.
    case malformedHeader(String)
    /// `content-length` is not a non-negative decimal integer.
    case invalidContentLength(String)
    /// The message uses `transfer-encoding: chunked`, which zbus framing does not carry.
    case chunkedNotSupported

    /// The status code of the reply the node sends before closing.
    public var status: Int {
        switch self {
        case .headerTooLarge: return 431
        case .bodyTooLarge: return 413
        case .malformedStartLine, .malformedHeader, .invalidContentLength: return 400
        case .chunkedNotSupported: return 411
        }
    }

    public var description: String {
        switch self {
        case .headerTooLarge(let limit):
            return "Bad format: header block larger than \(limit) bytes"
        case .bodyTooLarge(let declared, let limit):
            return "Bad format: content-length \(declared) exceeds the body limit of \(limit) bytes"
        case .malformedStartLine(let line):
            return "Bad format: malformed start line '\(line)'"
        case .malformedHeader(let line):
            return "Bad format: malformed header line '\(line)'"
        case .invalidContentLength(let value):
            return "Bad format: content-length '\(value)' is not a non-negative integer"
        case .chunkedNotSupported:
            return "Bad format: chunked transfer-encoding is not supported, send the body with a content-length"
        }
    }
}
