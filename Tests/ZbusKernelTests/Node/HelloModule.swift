import NIOCore
import ZbusKernel

/// The smallest plugin module: answers `cmd: hello` with its configured greeting.
final class HelloModule: PluginModule {
    static let name = "hello"
    static let summary = "Answers `hello` with a greeting (test module)."
    static let configKeys = ["greeting"]

    let greeting: String

    init(setup: ModuleSetup) throws(ConfigError) {
        greeting = try setup.config.string("greeting", default: "hello")
    }

    func contribute(to contributions: inout ModuleContributions) {
        let greeting = self.greeting
        contributions.add(ClosureCommandHandler { request, session in
            session.send(request.reply(status: 200, body: greeting))
        }, named: "hello", to: .commands)
    }
}

/// A module that claims `hello` too, to show that clashes are refused.
final class HelloClashModule: PluginModule {
    static let name = "hello-clash"
    static let summary = "Also answers `hello` (test module)."

    init(setup: ModuleSetup) throws(ConfigError) {}

    func contribute(to contributions: inout ModuleContributions) {
        contributions.add(ClosureCommandHandler { _, _ in }, named: "hello", to: .commands)
    }
}
