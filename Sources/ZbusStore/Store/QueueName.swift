/// The reversible mapping between queue names (any string) and directory names that are safe on every file system.
///
/// Bytes of the UTF-8 name outside `[A-Za-z0-9._-]` become `%XX` (upper-case hex), and so does a leading `.`: no
/// directory name is ever `.`, `..`, hidden, or contains `/`, and the store can keep its own dot-files beside the queues.
enum QueueName {
    /// The longest encoded name; most file systems allow 255 bytes per path component.
    static let maxEncodedLength = 255

    /// The directory name of the queue `name`.
    static func encode(_ name: String) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(name.utf8.count)
        for (index, byte) in name.utf8.enumerated() {
            if isSafe(byte) && !(index == 0 && byte == UInt8(ascii: ".")) {
                out.append(byte)
            } else {
                out.append(UInt8(ascii: "%"))
                out.append(hexDigit(byte >> 4))
                out.append(hexDigit(byte & 0xF))
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The queue name a directory name stands for, or `nil` when the directory is not one the store made (not
    /// canonically encoded, or not UTF-8).
    static func decode(_ directoryName: String) -> String? {
        let bytes = Array(directoryName.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "%") {
                guard index + 2 < bytes.count, let high = hexValue(bytes[index + 1]), let low = hexValue(bytes[index + 2])
                else { return nil }
                out.append(high << 4 | low)
                index += 3
            } else {
                out.append(byte)
                index += 1
            }
        }
        guard !out.isEmpty else { return nil }
        // Invalid UTF-8 decodes with replacement characters and then fails the canonical check below.
        let name = String(decoding: out, as: UTF8.self)
        // Only the canonical spelling maps back: this keeps the mapping one-to-one and skips foreign directories.
        return encode(name) == directoryName ? name : nil
    }

    /// Checks that `name` can be stored, returning its directory name.
    static func validate(_ name: String) throws(QueueStoreError) -> String {
        guard !name.isEmpty else { throw .invalidQueueName(name: name, reason: "the name is empty") }
        let encoded = encode(name)
        guard encoded.utf8.count <= maxEncodedLength else {
            throw .invalidQueueName(
                name: name,
                reason: "its directory name would be \(encoded.utf8.count) bytes, more than \(maxEncodedLength)")
        }
        return encoded
    }

    private static func isSafe(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"):
            return true
        default:
            return false
        }
    }

    private static func hexDigit(_ value: UInt8) -> UInt8 {
        value < 10 ? UInt8(ascii: "0") + value : UInt8(ascii: "A") + value - 10
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil // lower-case hex is not canonical
        }
    }
}
