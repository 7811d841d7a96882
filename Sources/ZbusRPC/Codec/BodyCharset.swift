import Foundation
import NIOCore

/// The body charsets RPC codecs read, named as zbus 6 peers name them in the `encoding` header.
enum BodyCharset {
    /// Whether `name` (absent means UTF-8) is UTF-8, the fast and common case.
    static func isUTF8(_ name: String?) -> Bool {
        guard let name else { return true }
        switch name.count {
        case 5, 4: return name.caseInsensitiveCompare("UTF-8") == .orderedSame || name.caseInsensitiveCompare("UTF8") == .orderedSame
        case 0: return true
        default: return false
        }
    }

    /// The body as UTF-8 bytes, converted from `charset` when it is another one.
    ///
    /// - Throws: ``RpcCodecError/unsupportedCharset(codec:charset:)`` or ``RpcCodecError/undecodableBody(codec:charset:)``.
    static func utf8Body(_ body: ByteBuffer, charset: String?, codec: String) throws(RpcCodecError) -> ByteBuffer {
        if isUTF8(charset) { return body }
        return ByteBuffer(string: try text(body, charset: charset, codec: codec))
    }

    /// The body as text in `charset` (UTF-8 when absent).
    ///
    /// - Throws: ``RpcCodecError/unsupportedCharset(codec:charset:)`` or ``RpcCodecError/undecodableBody(codec:charset:)``.
    static func text(_ body: ByteBuffer, charset: String?, codec: String) throws(RpcCodecError) -> String {
        guard let charset, !isUTF8(charset) else { return String(buffer: body) }
        let encoding: String.Encoding
        switch charset.lowercased() {
        case "iso-8859-1", "iso8859-1", "latin1", "iso_8859_1": encoding = .isoLatin1
        case "us-ascii", "ascii": encoding = .ascii
        case "utf-16", "utf16": encoding = .utf16
        case "utf-16be": encoding = .utf16BigEndian
        case "utf-16le": encoding = .utf16LittleEndian
        default: throw .unsupportedCharset(codec: codec, charset: charset)
        }
        guard let text = String(data: Data(body.readableBytesView), encoding: encoding) else {
            throw .undecodableBody(codec: codec, charset: charset)
        }
        return text
    }
}
