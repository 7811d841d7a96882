/// A module that another module needs on the same node, declared from its configuration.
///
/// The registry refuses a node whose YAML lacks a needed module, with an error located at ``requiredBy``, and starts
/// the modules so that each starts after the modules it needs (and stops before them).
///
/// ```swift
/// // in init(setup:), for a service hosted on this node's MQ:
/// dependencies.append(ModuleDependency(on: "mq", requiredBy: entry["mq"] ?? item, purpose: "to hold MQ 'Calc'",
///                                      alternative: "set `broker: HOST:PORT`"))
/// ```
public struct ModuleDependency: Sendable {
    /// The needed module's name, as in YAML (`mq`).
    public let module: String
    /// The configuration value that makes the module needed: the error points at it.
    public let requiredBy: ConfigValue
    /// Why it is needed, phrased to follow "needs it" (`to hold MQ 'Calc'`).
    public let purpose: String
    /// Another way out than loading the module, phrased to follow "or" (`set `broker: HOST:PORT``), if any.
    public let alternative: String?

    /// Declares a dependency.
    ///
    /// - Parameters:
    ///   - module: the needed module's name.
    ///   - requiredBy: the value that needs it (its file, line, column and key path locate the error).
    ///   - purpose: why, phrased to follow "needs it".
    ///   - alternative: another remedy than adding the module, phrased to follow "or".
    public init(on module: String, requiredBy: ConfigValue, purpose: String, alternative: String? = nil) {
        self.module = module
        self.requiredBy = requiredBy
        self.purpose = purpose
        self.alternative = alternative
    }

    /// The error for a node that lacks ``module``.
    func missingError(dependent: String) -> ConfigError {
        var message = "this node has no `\(module)` module, which module '\(dependent)' needs \(purpose): add `- module: \(module)`"
        if let alternative { message += ", or \(alternative)" }
        return requiredBy.error(message)
    }
}
