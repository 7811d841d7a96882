/// A configuration problem, located as precisely as the source allows.
///
/// Its description is the one line the CLI prints before exiting with code 2, for example
/// `node.yaml:3:3: node.lisen: unknown key; allowed: name, listen, store, log_level, limits, threads`.
public struct ConfigError: Error, Sendable, CustomStringConvertible, Equatable {
    /// The file the configuration came from (or a label such as `<defaults>`).
    public var file: String
    /// 1-based line of the offending value, when known.
    public var line: Int?
    /// 1-based column of the offending value, when known.
    public var column: Int?
    /// The dotted path of the offending key (`modules[1].fsync`), or empty for the whole file.
    public var keyPath: String
    /// What is wrong and what is allowed.
    public var message: String

    /// Creates an error.
    public init(file: String, line: Int? = nil, column: Int? = nil, keyPath: String, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.keyPath = keyPath
        self.message = message
    }

    public var description: String {
        var location = file
        if let line { location += ":\(line)" }
        if let column { location += ":\(column)" }
        return keyPath.isEmpty ? "\(location): \(message)" : "\(location): \(keyPath): \(message)"
    }
}
