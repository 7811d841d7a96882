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

    /// Builds the modules that `config` names, in start order (see ``loadModules(for:logger:)``).
    ///
    /// - Throws: ``ConfigError``, as ``loadModules(for:logger:)``.
    public func makeModules(for config: NodeConfig, logger: Logger) throws(ConfigError) -> [any PluginModule] {
        try loadModules(for: config, logger: logger).modules
    }

    /// Builds the modules that `config` names, collects their contributions, and orders them so that each starts after
    /// the modules it depends on (otherwise in YAML order).
    ///
    /// - Throws: ``ConfigError`` for an unknown module name (listing the registered ones), an unknown key in a
    ///   module's section (listing the allowed ones), a bad value, two modules contributing the same name to a point
    ///   (such as answering the same command) or both claiming an exclusive point, a needed module the node does not
    ///   load, or modules that need each other.
    public func loadModules(for config: NodeConfig, logger: Logger) throws(ConfigError) -> LoadedModules {
        var loaded: [(module: any PluginModule, entry: ModuleConfig)] = []
        var contributions = ModuleContributions()
        for command in BuiltInCommands.names {
            contributions.add(BuiltInCommandHandler(), named: command, to: .commands)
        }
        for entry in config.modules {
            guard let type = types[entry.name] else {
                let known = names.isEmpty ? "none are registered" : "registered: \(names.joined(separator: ", "))"
                throw entry.value.error("unknown module '\(entry.name)'; \(known)")
            }
            let section = try ConfigSection(entry.value, allowedKeys: ["module"] + type.configKeys)
            var moduleLogger = logger
            moduleLogger[metadataKey: "module"] = "\(entry.name)"
            let module = try type.init(setup: ModuleSetup(config: section, node: config, logger: moduleLogger))
            contributions.contributor = ModuleContributions.owner(entry.name)
            module.contribute(to: &contributions)
            if let conflict = contributions.conflicts.first {
                throw entry.value.error(conflict.message)
            }
            loaded.append((module, entry))
        }
        contributions.contributor = "the node"
        let ordered = try Self.startOrder(loaded)
        return LoadedModules(modules: ordered, contributions: contributions)
    }

    /// Orders `loaded` so that every module comes after the modules it depends on, keeping YAML order otherwise.
    private static func startOrder(
        _ loaded: [(module: any PluginModule, entry: ModuleConfig)]
    ) throws(ConfigError) -> [any PluginModule] {
        let present = Set(loaded.map(\.entry.name))
        for (module, entry) in loaded {
            for dependency in module.dependencies where !present.contains(dependency.module) {
                throw dependency.missingError(dependent: entry.name)
            }
        }
        var placed: Set<String> = []
        var remaining = loaded
        var ordered: [any PluginModule] = []
        while !remaining.isEmpty {
            // The first module (in YAML order) whose dependencies have all been placed; a module naming itself counts
            // as placed, so it cannot block itself.
            guard let index = remaining.firstIndex(where: { candidate in
                candidate.module.dependencies.allSatisfy { placed.contains($0.module) || $0.module == candidate.entry.name }
            }) else {
                let stuck = remaining[0]
                let waiting = stuck.module.dependencies.first { !placed.contains($0.module) }!
                let cycle = remaining.map { "'\($0.entry.name)'" }.joined(separator: ", ")
                throw waiting.requiredBy.error(
                    "modules \(cycle) need each other (module '\(stuck.entry.name)' needs module '\(waiting.module)' \(waiting.purpose)), "
                        + "so none can start first: remove one of the needs")
            }
            let next = remaining.remove(at: index)
            ordered.append(next.module)
            placed.insert(next.entry.name)
        }
        return ordered
    }
}

/// The modules a node loads, in start order, with everything they contribute.
public struct LoadedModules: Sendable {
    /// The modules, each after those it depends on.
    public let modules: [any PluginModule]
    /// What they contribute (and the kernel's built-in commands).
    public let contributions: ModuleContributions
}

/// Stands for a built-in command in ``ExtensionPoint/commands`` so that modules cannot claim it; the dispatcher answers
/// built-in commands itself and never calls this.
struct BuiltInCommandHandler: CommandHandler {
    func handle(_ request: Message, session: Session) {}
}
