import Yams

/// A parsed YAML value that remembers where it came from, so that every error can name the file, line and key.
public struct ConfigValue: Sendable {
    /// The shape of a value.
    public indirect enum Kind: Sendable {
        /// A scalar, as written (YAML's `~`/`null` is ``null``).
        case scalar(String)
        /// A sequence.
        case sequence([ConfigValue])
        /// A mapping with its keys in file order.
        case mapping([(key: String, value: ConfigValue)])
        /// An explicit or implied null.
        case null
    }

    /// The value.
    public let kind: Kind
    /// The file it was read from.
    public let file: String
    /// The dotted key path that reached it.
    public let keyPath: String
    /// 1-based line, when known.
    public let line: Int?
    /// 1-based column, when known.
    public let column: Int?
    /// Where the key that introduced this value stands (line, column), when it came from a mapping.
    public var keyMark: (line: Int, column: Int)? = nil

    /// Parses YAML text.
    ///
    /// - Parameters:
    ///   - text: the YAML document.
    ///   - file: the name used in error messages.
    /// - Throws: ``ConfigError`` naming the line and column of a syntax error.
    public static func parse(yaml text: String, file: String) throws(ConfigError) -> ConfigValue {
        let node: Yams.Node?
        do {
            node = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            throw Self.describe(error, file: file)
        } catch {
            throw ConfigError(file: file, keyPath: "", message: "not valid YAML: \(error)")
        }
        guard let node else { return ConfigValue(kind: .null, file: file, keyPath: "", line: 1, column: 1) }
        return try convert(node, file: file, keyPath: "")
    }

    /// Makes an error located at this value.
    public func error(_ message: String) -> ConfigError {
        ConfigError(file: file, line: line, column: column, keyPath: keyPath, message: message)
    }

    /// Makes an error located at the key that introduced this value (for unknown or misplaced keys).
    public func keyError(_ message: String) -> ConfigError {
        ConfigError(file: file, line: keyMark?.line ?? line, column: keyMark?.column ?? column, keyPath: keyPath, message: message)
    }

    /// A short name of the value's type for error messages.
    public var typeName: String {
        switch kind {
        case .scalar: return "a scalar"
        case .sequence: return "a list"
        case .mapping: return "a mapping"
        case .null: return "nothing"
        }
    }

    private static func convert(_ node: Yams.Node, file: String, keyPath: String) throws(ConfigError) -> ConfigValue {
        let line = node.mark?.line
        let column = node.mark?.column
        switch node {
        case .scalar(let scalar):
            let isNull = scalar.style == .plain && ["", "~", "null", "Null", "NULL"].contains(scalar.string)
            return ConfigValue(kind: isNull ? .null : .scalar(scalar.string), file: file, keyPath: keyPath, line: line, column: column)
        case .sequence(let sequence):
            var items: [ConfigValue] = []
            for (offset, item) in sequence.enumerated() {
                items.append(try convert(item, file: file, keyPath: "\(keyPath)[\(offset)]"))
            }
            return ConfigValue(kind: .sequence(items), file: file, keyPath: keyPath, line: line, column: column)
        case .mapping(let mapping):
            var entries: [(key: String, value: ConfigValue)] = []
            for (keyNode, valueNode) in mapping {
                guard case .scalar(let keyScalar) = keyNode else {
                    throw ConfigError(file: file, line: keyNode.mark?.line, column: keyNode.mark?.column, keyPath: keyPath,
                                      message: "keys must be plain names")
                }
                let key = keyScalar.string
                let childPath = keyPath.isEmpty ? key : "\(keyPath).\(key)"
                if entries.contains(where: { $0.key == key }) {
                    throw ConfigError(file: file, line: keyNode.mark?.line, column: keyNode.mark?.column, keyPath: childPath,
                                      message: "duplicate key")
                }
                var value = try convert(valueNode, file: file, keyPath: childPath)
                if case .null = value.kind, value.line == nil {
                    value = ConfigValue(kind: .null, file: file, keyPath: childPath, line: keyNode.mark?.line, column: keyNode.mark?.column)
                }
                if let mark = keyNode.mark { value.keyMark = (mark.line, mark.column) }
                entries.append((key, value))
            }
            return ConfigValue(kind: .mapping(entries), file: file, keyPath: keyPath, line: line, column: column)
        case .alias:
            throw ConfigError(file: file, line: line, column: column, keyPath: keyPath, message: "YAML aliases are not supported")
        }
    }

    private static func describe(_ error: YamlError, file: String) -> ConfigError {
        switch error {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
            .composer(let context, let problem, let mark, _):
            let detail = context.map { "\($0.text) " } ?? ""
            return ConfigError(file: file, line: mark.line, column: mark.column, keyPath: "",
                               message: "not valid YAML: \(detail)\(problem)")
        case .reader(let problem, _, _, _):
            return ConfigError(file: file, keyPath: "", message: "not readable as YAML text: \(problem)")
        default:
            return ConfigError(file: file, keyPath: "", message: "not valid YAML: \(error)")
        }
    }
}
