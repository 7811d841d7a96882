import Logging

/// A typed view of one YAML mapping whose keys are known in advance.
///
/// Creating it rejects unknown keys; the accessors convert values and throw a ``ConfigError`` that names the file, the
/// line, the key and what is allowed. Modules receive their own section this way, so every module reports errors alike.
public struct ConfigSection: Sendable {
    /// The mapping value itself (for its location).
    public let value: ConfigValue
    private let entries: [(key: String, value: ConfigValue)]

    /// Wraps `value`, which must be a mapping (or null, read as empty) whose keys are all in `allowedKeys`.
    public init(_ value: ConfigValue, allowedKeys: [String]) throws(ConfigError) {
        self.value = value
        switch value.kind {
        case .mapping(let entries): self.entries = entries
        case .null: self.entries = []
        default: throw value.error("expected a mapping of \(allowedKeys.joined(separator: ", ")), found \(value.typeName)")
        }
        for entry in entries where !allowedKeys.contains(entry.key) {
            let allowed = allowedKeys.isEmpty ? "this section takes no keys" : "allowed: \(allowedKeys.joined(separator: ", "))"
            throw entry.value.keyError("unknown key; \(allowed)")
        }
    }

    /// The raw value of `key`, or `nil` when absent or null.
    public subscript(key: String) -> ConfigValue? {
        guard let value = entries.first(where: { $0.key == key })?.value else { return nil }
        if case .null = value.kind { return nil }
        return value
    }

    /// Whether `key` is present with a non-null value.
    public func contains(_ key: String) -> Bool { self[key] != nil }

    /// The keys present, in file order.
    public var keys: [String] { entries.map(\.key) }

    /// A string value.
    public func string(_ key: String) throws(ConfigError) -> String? {
        guard let value = self[key] else { return nil }
        guard case .scalar(let text) = value.kind else { throw value.error("expected a string, found \(value.typeName)") }
        return text
    }

    /// A string value, or `defaultValue`.
    public func string(_ key: String, default defaultValue: String) throws(ConfigError) -> String {
        try string(key) ?? defaultValue
    }

    /// An integer within `range`.
    public func int(_ key: String, in range: ClosedRange<Int> = Int.min...Int.max) throws(ConfigError) -> Int? {
        guard let value = self[key] else { return nil }
        guard case .scalar(let text) = value.kind, let number = Int(text) else {
            throw value.error("expected an integer, found \(describe(value))")
        }
        guard range.contains(number) else { throw value.error("\(number) is out of range; allowed: \(range.lowerBound)...\(range.upperBound)") }
        return number
    }

    /// A boolean (`true`/`false`, `yes`/`no`, `on`/`off`).
    public func bool(_ key: String) throws(ConfigError) -> Bool? {
        guard let value = self[key] else { return nil }
        guard case .scalar(let text) = value.kind else { throw value.error("expected true or false, found \(value.typeName)") }
        switch text.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw value.error("expected true or false, found '\(text)'")
        }
    }

    /// A byte size: an integer, or a number with a unit (`64KiB`, `32MiB`, `1GiB`, `512KB`, `10MB`).
    public func byteSize(_ key: String, in range: ClosedRange<Int> = 1...Int.max) throws(ConfigError) -> Int? {
        guard let value = self[key] else { return nil }
        guard case .scalar(let text) = value.kind, let size = ByteSizeParser.parse(text) else {
            throw value.error("expected a size such as 65536, 64KiB or 32MiB, found \(describe(value))")
        }
        guard range.contains(size) else { throw value.error("\(size) bytes is out of range; allowed: \(range.lowerBound)...\(range.upperBound)") }
        return size
    }

    /// A duration in milliseconds: an integer (ms) or a number with a unit (`100ms`, `2s`, `1m`).
    public func milliseconds(_ key: String, in range: ClosedRange<Int> = 0...Int.max) throws(ConfigError) -> Int? {
        guard let value = self[key] else { return nil }
        guard case .scalar(let text) = value.kind, let ms = DurationParser.milliseconds(text) else {
            throw value.error("expected a duration such as 100ms, 2s or 1m, found \(describe(value))")
        }
        guard range.contains(ms) else { throw value.error("\(ms) ms is out of range; allowed: \(range.lowerBound)...\(range.upperBound) ms") }
        return ms
    }

    /// One of `allowed` (exact, case-sensitive).
    public func choice(_ key: String, allowed: [String]) throws(ConfigError) -> String? {
        guard let value = self[key] else { return nil }
        guard case .scalar(let text) = value.kind, allowed.contains(text) else {
            throw value.error("expected one of \(allowed.joined(separator: " | ")), found \(describe(value))")
        }
        return text
    }

    /// A `host:port` address.
    public func address(_ key: String) throws(ConfigError) -> HostAndPort? {
        guard let value = self[key] else { return nil }
        guard case .scalar(let text) = value.kind else { throw value.error("expected host:port, found \(value.typeName)") }
        do throws(HostAndPort.ParseError) {
            return try HostAndPort(parsing: text)
        } catch {
            throw value.error(error.description)
        }
    }

    /// A list of strings (a YAML list, or one comma-separated string).
    public func stringList(_ key: String) throws(ConfigError) -> [String]? {
        guard let value = self[key] else { return nil }
        switch value.kind {
        case .scalar(let text):
            return text.split(separator: ",").map { $0.trimmingCharacters(in: " ") }.filter { !$0.isEmpty }
        case .sequence(let items):
            var result: [String] = []
            for item in items {
                guard case .scalar(let text) = item.kind else { throw item.error("expected a string, found \(item.typeName)") }
                result.append(text)
            }
            return result
        default:
            throw value.error("expected a list of strings, found \(value.typeName)")
        }
    }

    /// A nested section with its own allowed keys.
    public func section(_ key: String, allowedKeys: [String]) throws(ConfigError) -> ConfigSection? {
        guard let value = self[key] else { return nil }
        return try ConfigSection(value, allowedKeys: allowedKeys)
    }

    /// A log level name (`trace`, `debug`, `info`, `notice`, `warning`, `error`, `critical`).
    public func logLevel(_ key: String) throws(ConfigError) -> Logger.Level? {
        guard let name = try choice(key, allowed: Logger.Level.allCases.map(\.rawValue)) else { return nil }
        return Logger.Level(rawValue: name)
    }

    private func describe(_ value: ConfigValue) -> String {
        if case .scalar(let text) = value.kind { return "'\(text)'" }
        return value.typeName
    }
}

extension StringProtocol {
    fileprivate func trimmingCharacters(in character: Character) -> String {
        var slice = Substring(self)
        while slice.first == character { slice = slice.dropFirst() }
        while slice.last == character { slice = slice.dropLast() }
        return String(slice)
    }
}

/// Parses byte sizes with optional binary or decimal units.
public enum ByteSizeParser {
    /// `65536`, `64KiB`, `64k`, `32MiB`, `1GB`... (case-insensitive; `K`/`KB`/`KiB` all mean 1024), or `nil`.
    public static func parse(_ text: String) -> Int? {
        let trimmed = text.trimmingCharacters(in: " ").lowercased()
        let digits = trimmed.prefix { $0.isNumber }
        guard !digits.isEmpty, let number = Int(digits) else { return nil }
        let unit = trimmed.dropFirst(digits.count).trimmingCharacters(in: " ")
        let multiplier: Int
        switch unit {
        case "", "b": multiplier = 1
        case "k", "kb", "kib": multiplier = 1 << 10
        case "m", "mb", "mib": multiplier = 1 << 20
        case "g", "gb", "gib": multiplier = 1 << 30
        default: return nil
        }
        let (result, overflow) = number.multipliedReportingOverflow(by: multiplier)
        return overflow ? nil : result
    }
}

/// Parses durations such as `100ms`, `2s`, `1m`, `1h` into milliseconds.
public enum DurationParser {
    /// Milliseconds, or `nil` when `text` is not a duration. A bare number is milliseconds.
    public static func milliseconds(_ text: String) -> Int? {
        let trimmed = text.trimmingCharacters(in: " ").lowercased()
        let digits = trimmed.prefix { $0.isNumber }
        guard !digits.isEmpty, let number = Int(digits) else { return nil }
        let unit = trimmed.dropFirst(digits.count).trimmingCharacters(in: " ")
        let multiplier: Int
        switch unit {
        case "", "ms": multiplier = 1
        case "s": multiplier = 1000
        case "m", "min": multiplier = 60_000
        case "h": multiplier = 3_600_000
        default: return nil
        }
        let (result, overflow) = number.multipliedReportingOverflow(by: multiplier)
        return overflow ? nil : result
    }
}
