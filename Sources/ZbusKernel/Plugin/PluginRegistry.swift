import Logging

/// The compiled-in plugin modules, by name.
///
/// A node loads exactly the modules its YAML names, from this registry. The standard registry (product `Zbus`,
/// `PluginRegistry.standard`) holds the modules shipped with zbus; embedders add their own with ``register(_:)``.
public struct PluginRegistry: Sendable {
    private var types: [String: any PluginModule.Type] = [:]

    /// An empty registry.
    public init() {}

    /// Registers a module type under its ``PluginModule/name``; a later registration of the same name replaces it.
    public mutating func register(_ type: any PluginModule.Type) {
        types[type.name] = type
    }

    /// Returns a copy with `type` registered.
    public func registering(_ type: any PluginModule.Type) -> PluginRegistry {
        var copy = self
        copy.register(type)
        return copy
    }

    /// The registered names, sorted.
    public var names: [String] { types.keys.sorted() }

    /// The module type registered as `name`.
    public func module(named name: String) -> (any PluginModule.Type)? { types[name] }

    /// Builds the modules that `config` names, in order, validating each section.
    ///
    /// - Throws: ``ConfigError`` for an unknown module name (listing the registered ones), an unknown key in a
    ///   module's section (listing the allowed ones), a bad value, or two modules answering the same command.
    public func makeModules(for config: NodeConfig, logger: Logger) throws(ConfigError) -> [any PluginModule] {
        var modules: [any PluginModule] = []
        var commandOwners: [String: String] = Dictionary(uniqueKeysWithValues: BuiltInCommands.names.map { ($0, "the kernel") })
        for entry in config.modules {
            guard let type = types[entry.name] else {
                let known = names.isEmpty ? "none are registered" : "registered: \(names.joined(separator: ", "))"
                throw entry.value.error("unknown module '\(entry.name)'; \(known)")
            }
            let section = try ConfigSection(entry.value, allowedKeys: ["module"] + type.configKeys)
            var moduleLogger = logger
            moduleLogger[metadataKey: "module"] = "\(entry.name)"
            let module = try type.init(setup: ModuleSetup(config: section, node: config, logger: moduleLogger))
            for command in module.commands.keys {
                if let owner = commandOwners[command] {
                    throw entry.value.error("module '\(entry.name)' answers command '\(command)', which \(owner) already answers")
                }
                commandOwners[command] = "module '\(entry.name)'"
            }
            modules.append(module)
        }
        return modules
    }
}
