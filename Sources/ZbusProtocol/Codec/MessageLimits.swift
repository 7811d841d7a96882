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
    /// Two `content-length` headers with different values (the first value, then the conflicting one): which one
    /// frames the body is exactly what a request smuggler exploits (RFC 9112 6.3). Identical repeats are accepted.
    case conflictingContentLength(first: String, second: String)
    /// `transfer-encoding` and `content-length` in one message: the two framings disagree (RFC 9112 6.1).
    case transferEncodingWithContentLength
    /// A `transfer-encoding` other than chunked: the body length cannot be known (RFC 9112 6.3).
    case unsupportedTransferEncoding(String)
    /// Whitespace between a header name and its colon (RFC 9112 5.1 requires a 400).
    case whitespaceBeforeColon(String)
    /// A header line starting with a space or tab: obsolete line folding (RFC 9112 5.2), or whitespace before the
    /// first header.
    case obsoleteLineFolding(String)
    /// A line of the header block ended with LF alone, at this offset of the block. zbus lines end with CRLF.
    case bareLineFeed(offset: Int)
    /// A CR not followed by LF inside a line of the header block (RFC 9112 2.2).
    case bareCarriageReturn(String)

    /// The status code of the reply the node sends before closing.
    public var status: Int {
        switch self {
        case .headerTooLarge: return 431
        case .bodyTooLarge: return 413
        case .malformedStartLine, .malformedHeader, .invalidContentLength, .conflictingContentLength,
             .transferEncodingWithContentLength, .unsupportedTransferEncoding, .whitespaceBeforeColon,
             .obsoleteLineFolding, .bareLineFeed, .bareCarriageReturn:
            return 400
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
        case .conflictingContentLength(let first, let second):
            return "Bad format: conflicting content-length headers '\(first)' and '\(second)'; send one"
        case .transferEncodingWithContentLength:
            return "Bad format: transfer-encoding and content-length in one message; send the body with a content-length only"
        case .unsupportedTransferEncoding(let value):
            return "Bad format: transfer-encoding '\(value)' is not supported, send the body with a content-length"
        case .whitespaceBeforeColon(let line):
            return "Bad format: whitespace between header name and colon in '\(line)'"
        case .obsoleteLineFolding(let line):
            return "Bad format: header line starts with whitespace (obsolete line folding) '\(line)'"
        case .bareLineFeed(let offset):
            return "Bad format: bare LF at byte \(offset) of the header block; lines must end with CRLF"
        case .bareCarriageReturn(let line):
            return "Bad format: bare CR (not followed by LF) in '\(line)'"
        }
    }
}
