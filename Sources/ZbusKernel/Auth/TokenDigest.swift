import Crypto

/// The digest tokens are compared by: SHA-256 (swift-crypto), as lower-case hex, the form `sha256sum` prints and the
/// `auth` section's `sha256` keys hold.
public enum TokenDigest {
    /// The SHA-256 of `text`'s UTF-8 bytes as 64 lower-case hex digits.
    public static func hex(_ text: String) -> String {
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var result: [UInt8] = []
        result.reserveCapacity(64)
        for byte in SHA256.hash(data: Array(text.utf8)) {
            result.append(digits[Int(byte >> 4)])
            result.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: result, as: UTF8.self)
    }
}
