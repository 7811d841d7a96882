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

    var commands: [String: any CommandHandler] {
        let greeting = self.greeting
        return ["hello": ClosureCommandHandler { request, session in
            session.send(request.reply(status: 200, body: greeting))
        }]
    }
}

/// A module that claims `hello` too, to show that clashes are refused.
final class HelloClashModule: PluginModule {
    static let name = "hello-clash"
    static let summary = "Also answers `hello` (test module)."

    init(setup: ModuleSetup) throws(ConfigError) {}

    var commands: [String: any CommandHandler] {
        ["hello": ClosureCommandHandler { _, _ in }]
    }
}
