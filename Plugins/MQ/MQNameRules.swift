import ZbusKernel
import ZbusStore

/// What an MQ name may be, checked wherever a request names an MQ that is created, removed or missing.
///
/// Header values are decoded with invalid UTF-8 bytes replaced by U+FFFD, so distinct invalid names would collapse
/// into one MQ: a name holding U+FFFD is refused. Control characters would land in logs and directory names.
enum MQNameRules {
    /// The longest name, in UTF-8 bytes (the store's directory names are limited to 255 bytes as well).
    static let maxBytes = 255
    /// How much of a refused or missing name a reply or log shows.
    static let shownCharacters = 64

    /// Why `name` is not a valid MQ name, or `nil` when it is.
    static func problem(_ name: String) -> String? {
        let bytes = name.utf8.count
        if bytes == 0 { return "MQ name is empty" }
        if bytes > maxBytes { return "MQ name is \(bytes) bytes, more than \(maxBytes) (the MQ name limit)" }
        for scalar in name.unicodeScalars {
            if scalar == "\u{FFFD}" { return "MQ name is not valid UTF-8" }
            if scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) {
                return "MQ name holds the control character U+\(String(scalar.value, radix: 16, uppercase: true).leftPadded(to: 4))"
            }
        }
        let directoryBytes = QueueStore.directoryName(forQueue: name).utf8.count
        if directoryBytes > maxBytes {
            return "MQ name takes \(directoryBytes) bytes as a directory name, more than \(maxBytes) (characters outside A-Z a-z 0-9 . _ - take 3 bytes per UTF-8 byte)"
        }
        return nil
    }

    /// A short, printable form of `name` for replies and logs: its first characters, control characters replaced.
    static func shown(_ name: String) -> String {
        var out = ""
        var count = 0
        for scalar in name.unicodeScalars {
            if count == shownCharacters {
                return out + "...(\(name.utf8.count) bytes)"
            }
            out.unicodeScalars.append(scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) ? "?" : scalar)
            count += 1
        }
        return out
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
