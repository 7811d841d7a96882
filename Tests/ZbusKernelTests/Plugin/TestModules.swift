import ServiceLifecycle
import ZbusKernel
import ZbusTestSupport

/// Lifecycle events of the test modules, per test (`journal:` in the module's section names the test's journal).
enum Journals {
    static let entries = LockedValue<[String: [String]]>([:])

    static func append(_ event: String, to journal: String) {
        entries.withLock { $0[journal, default: []].append(event) }
    }

    static func events(_ journal: String) -> [String] {
        entries.withLock { $0[journal] ?? [] }
    }
}

/// A module that journals its lifecycle and needs the modules its `needs:` list names. Subclasses only rename it.
class JournalingModule: PluginModule, @unchecked Sendable {
    class var name: String { "journaling" }
    class var summary: String { "Journals its lifecycle (test module)." }
    class var configKeys: [String] { ["needs", "journal", "fail_run"] }

    private let needs: [(module: String, value: ConfigValue)]
    private let journal: String
    private let failRun: Bool
    private var moduleName: String { Self.name }

    required init(setup: ModuleSetup) throws(ConfigError) {
        journal = try setup.config.string("journal", default: "")
        failRun = try setup.config.bool("fail_run") ?? false
        var needs: [(String, ConfigValue)] = []
        if let list = setup.config["needs"], case .sequence(let items) = list.kind {
            for item in items {
                guard case .scalar(let name) = item.kind else { throw item.error("expected a module name") }
                needs.append((name, item))
            }
        }
        self.needs = needs
    }

    var dependencies: [ModuleDependency] {
        needs.map { ModuleDependency(on: $0.module, requiredBy: $0.value, purpose: "to test dependencies", alternative: "remove it from `needs`") }
    }

    func start(_ context: NodeContext) async throws { Journals.append("start \(moduleName)", to: journal) }

    func run() async throws {
        Journals.append("run \(moduleName)", to: journal)
        if failRun { throw JournalingFailure() }
        try await gracefulShutdown()
        Journals.append("graceful \(moduleName)", to: journal)
    }

    func shutdown() async { Journals.append("shutdown \(moduleName)", to: journal) }
}

struct JournalingFailure: Error, CustomStringConvertible {
    var description: String { "the test asked the module to fail" }
}

final class ModuleA: JournalingModule, @unchecked Sendable { override class var name: String { "a" } }
final class ModuleB: JournalingModule, @unchecked Sendable { override class var name: String { "b" } }
final class ModuleC: JournalingModule, @unchecked Sendable { override class var name: String { "c" } }

extension ExtensionPoint where Value == String {
    /// A point declared by a (test) module, ``GreeterModule``, that other modules contribute greetings to, by language.
    static var greetings: ExtensionPoint { .named("test.greetings", noun: "greeting") }
}

/// Declares ``ExtensionPoint/greetings`` and answers `greet` (header `lang`) with what other modules contributed.
final class GreeterModule: PluginModule {
    static let name = "greeter"
    static let summary = "Answers `greet` with contributed greetings (test module)."

    private let greetings = LockedValue<[String: String]>([:])

    init(setup: ModuleSetup) throws(ConfigError) {}

    func contribute(to contributions: inout ModuleContributions) {
        let greetings = self.greetings
        contributions.add(ClosureCommandHandler { request, session in
            let language = request.headers["lang"] ?? ""
            let greeting = greetings.withLock { $0[language] }
            session.send(request.reply(status: greeting == nil ? 404 : 200, body: greeting ?? "no greeting in '\(language)'"))
        }, named: "greet", to: .commands)
    }

    func start(_ context: NodeContext) async throws {
        let contributed = context.contributions.values(of: .greetings)
        greetings.withLock { $0 = contributed }
    }
}

/// Contributes French to ``GreeterModule``'s point, knowing nothing of the module.
final class FrenchModule: PluginModule {
    static let name = "french"
    static let summary = "Contributes `bonjour` (test module)."
    init(setup: ModuleSetup) throws(ConfigError) {}
    func contribute(to contributions: inout ModuleContributions) {
        contributions.add("bonjour", named: "fr", to: .greetings)
    }
}

/// Also contributes French, to show the conflict.
final class OtherFrenchModule: PluginModule {
    static let name = "other-french"
    static let summary = "Contributes `salut` as French too (test module)."
    init(setup: ModuleSetup) throws(ConfigError) {}
    func contribute(to contributions: inout ModuleContributions) {
        contributions.add("salut", named: "fr", to: .greetings)
    }
}

/// Claims the default route: answers requests without a command with `caught by NAME`.
class CatchAllModule: PluginModule, @unchecked Sendable {
    class var name: String { "catch-all" }
    class var summary: String { "Claims the default route (test module)." }
    required init(setup: ModuleSetup) throws(ConfigError) {}
    func contribute(to contributions: inout ModuleContributions) {
        let name = Self.name
        contributions.add(ClosureCommandHandler { request, session in
            session.send(request.reply(status: 200, body: "caught by \(name)"))
        }, to: .defaultRoute)
    }
}

final class OtherCatchAllModule: CatchAllModule, @unchecked Sendable {
    override class var name: String { "other-catch-all" }
}

/// Answers the kernel's own `test` command, which is refused.
final class TestCommandModule: PluginModule {
    static let name = "test-command"
    static let summary = "Tries to answer `test` (test module)."
    init(setup: ModuleSetup) throws(ConfigError) {}
    func contribute(to contributions: inout ModuleContributions) {
        contributions.add(ClosureCommandHandler { _, _ in }, named: "test", to: .commands)
    }
}
