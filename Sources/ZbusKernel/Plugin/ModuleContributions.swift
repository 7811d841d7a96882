/// What the loaded modules of a node contribute, by ``ExtensionPoint``.
///
/// Each module adds its values in ``PluginModule/contribute(to:)``; the registry checks them for conflicts as it goes
/// and hands the result to every module at start (``NodeContext/contributions``):
///
/// ```swift
/// func contribute(to contributions: inout ModuleContributions) {
///     contributions.add(JsonRpcCodec(), to: .rpcCodecs)                 // the codec knows its name
///     contributions.add(EchoHandler(), named: "echo", to: .commands)
///     contributions.add(UrlCallHandler(), to: .defaultRoute)            // exclusive: one module per node
/// }
/// ```
public struct ModuleContributions: Sendable {
    struct Entry: Sendable {
        let module: String
        let value: any Sendable
    }

    /// A second contribution to a name (or to an exclusive point) that a module already holds.
    struct Conflict: Sendable {
        let module: String
        let message: String
    }

    /// Per point, the contributions by name (`""` for an exclusive point).
    private var entries: [ExtensionPointKey: [String: Entry]] = [:]
    /// How each point that received a contribution is described, for listings.
    private var descriptions: [ExtensionPointKey: (noun: String, isExclusive: Bool)] = [:]
    /// The module whose ``PluginModule/contribute(to:)`` is running; values are filed under it.
    var contributor: String
    /// Conflicts found while `contributor` contributed, for the registry to report with the module's location.
    private(set) var conflicts: [Conflict] = []

    /// An empty set of contributions, filed under `contributor` until the registry names the next module.
    ///
    /// - Parameter contributor: the owner of values added from now on (`the kernel`, or `module 'NAME'`).
    public init(contributor: String = "the kernel") {
        self.contributor = contributor
    }

    /// Contributes `value` under `name` to a named point.
    ///
    /// A name another module already contributed to this point is a configuration error naming both modules (the
    /// node does not start, `zbus check-config` reports it).
    ///
    /// - Parameters:
    ///   - value: the contribution.
    ///   - name: the name it answers to (a `cmd` value, an adapter kind); ignored by an exclusive point.
    ///   - point: where it goes.
    public mutating func add<Value>(_ value: Value, named name: String, to point: ExtensionPoint<Value>) {
        let name = point.isExclusive ? "" : name
        var values = entries[point.key, default: [:]]
        if let existing = values[name] {
            let what = point.isExclusive ? point.noun : "\(point.noun) '\(name)'"
            conflicts.append(Conflict(
                module: contributor,
                message: point.isExclusive
                    ? "\(contributor) \(point.verb) \(what), which \(existing.module) already \(point.verb); only one module of a node may"
                    : "\(contributor) \(point.verb) \(what), which \(existing.module) already \(point.verb)"))
            return
        }
        values[name] = Entry(module: contributor, value: value)
        entries[point.key] = values
        descriptions[point.key] = (point.noun, point.isExclusive)
    }

    /// Contributes `value` to an exclusive point, or to a named point whose values carry their name (such as a codec).
    ///
    /// - Precondition: the point is exclusive or was declared with `nameOf`; otherwise use ``add(_:named:to:)``.
    public mutating func add<Value>(_ value: Value, to point: ExtensionPoint<Value>) {
        if point.isExclusive { return add(value, named: "", to: point) }
        guard let nameOf = point.nameOf else {
            preconditionFailure("extension point '\(point.id)' needs a name for each value: use add(_:named:to:)")
        }
        add(value, named: nameOf(value), to: point)
    }

    /// The values contributed to a named point, by name.
    public func values<Value>(of point: ExtensionPoint<Value>) -> [String: Value] {
        guard let values = entries[point.key] else { return [:] }
        // The key includes `Value`'s type, so every stored value is a `Value`.
        return values.mapValues { $0.value as! Value }
    }

    /// The value contributed to an exclusive point, if a module claimed it.
    public func value<Value>(of point: ExtensionPoint<Value>) -> Value? {
        entries[point.key]?[""].map { $0.value as! Value }
    }

    /// Who contributed `name` to `point` (`module 'mq'`, `the kernel`), or `nil`; pass `""` for an exclusive point.
    public func contributor<Value>(of point: ExtensionPoint<Value>, named name: String = "") -> String? {
        entries[point.key]?[point.isExclusive ? "" : name]?.module
    }

    /// Everything `module` (its YAML name) contributed, one line per point, sorted: `commands: consume, produce`,
    /// `claims the default route (...)`. What `zbus modules` lists.
    public func summary(ofModule module: String) -> [String] {
        let owner = Self.owner(module)
        var lines: [String] = []
        for (key, values) in entries {
            let names = values.filter { $0.value.module == owner }.keys.sorted()
            guard !names.isEmpty, let description = descriptions[key] else { continue }
            lines.append(description.isExclusive
                ? "claims \(description.noun)"
                : "\(description.noun)s: \(names.joined(separator: ", "))")
        }
        return lines.sorted()
    }

    /// How contributions name a module.
    static func owner(_ module: String) -> String { "module '\(module)'" }
}
