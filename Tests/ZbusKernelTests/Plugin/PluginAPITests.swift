import Logging
import Testing
import ZbusTestSupport
@testable import ZbusKernel

/// Loads the modules of `yaml` (file name `plugins.yaml`) from `registry`.
private func load(_ yaml: String, _ registry: PluginRegistry) throws -> LoadedModules {
    try registry.loadModules(for: NodeConfig.parse(yaml: yaml, file: "plugins.yaml"), logger: quietLogger)
}

/// The configuration error of `yaml`, as the CLI prints it.
private func configError(_ yaml: String, _ registry: PluginRegistry, sourceLocation: SourceLocation = #_sourceLocation) -> String {
    do {
        _ = try load(yaml, registry)
        Issue.record("no error for:\n\(yaml)", sourceLocation: sourceLocation)
        return ""
    } catch {
        return "\(error)"
    }
}

/// A node of `yaml` on 127.0.0.1, port 0.
private func makeNode(_ yaml: String, _ registry: PluginRegistry) throws -> Node {
    var config = try NodeConfig.parse(yaml: yaml, file: "plugins.yaml")
    config.listen = HostAndPort(host: "127.0.0.1", port: 0)
    config.logLevel = .critical
    return try Node(config: config, registry: registry)
}

/// Sends one request over an in-process session of `node` and returns the reply.
private func ask(_ node: Node, _ headers: [(String, String)], uri: String = "/") async throws -> Message {
    let (replies, continuation) = AsyncStream.makeStream(of: Message.self)
    let connection = try node.connectInProcess(onMessage: { continuation.yield($0) }, onClose: { continuation.finish() })
    defer { connection.close() }
    connection.send(Message(method: "GET", uri: uri, headers: Headers(headers)))
    for await reply in replies { return reply }
    throw PluginTestError(description: "the session closed without a reply")
}

private struct PluginTestError: Error, CustomStringConvertible {
    let description: String
}

private let quietLogger: Logger = {
    var logger = Logger(label: "plugin-api-test")
    logger.logLevel = .critical
    return logger
}()

private let journaling = PluginRegistry().registering(ModuleA.self).registering(ModuleB.self).registering(ModuleC.self)

@Suite("Plugin API: extension points, dependencies, services")
struct PluginAPITests {
    @Test("a module contributes to a point that another module declares, and the declaring module reads it at start")
    func contributionToAnotherModulesPoint() async throws {
        let registry = PluginRegistry().registering(GreeterModule.self).registering(FrenchModule.self)
        // The contributor comes after the module that reads the point: contributions are all collected before start.
        let node = try makeNode("modules:\n  - module: greeter\n  - module: french\n", registry)
        try await node.start()
        let french = try await ask(node, [("cmd", "greet"), ("lang", "fr")])
        let german = try await ask(node, [("cmd", "greet"), ("lang", "de")])
        await node.shutdown()
        #expect(french.status == 200 && french.bodyString == "bonjour")
        #expect(german.status == 404)
    }

    @Test("two modules contributing one name to a point: a configuration error naming both, at the second module")
    func conflictOnAPoint() {
        let registry = PluginRegistry().registering(GreeterModule.self).registering(FrenchModule.self).registering(OtherFrenchModule.self)
        let error = configError("modules:\n  - module: french\n  - module: other-french\n", registry)
        #expect(error == "plugins.yaml:3:5: modules[1]: module 'other-french' contributes greeting 'fr', which module 'french' already contributes")
    }

    @Test("a module may not answer a command the kernel answers")
    func builtInCommandConflict() {
        let error = configError("modules:\n  - module: test-command\n", PluginRegistry().registering(TestCommandModule.self))
        #expect(error.hasSuffix("module 'test-command' answers command 'test', which the kernel already answers"), "\(error)")
    }

    @Test("the default route: the claiming module gets requests without a command; a second claim is refused")
    func defaultRoute() async throws {
        let registry = PluginRegistry().registering(CatchAllModule.self).registering(OtherCatchAllModule.self)
        let error = configError("modules:\n  - module: catch-all\n  - module: other-catch-all\n", registry)
        #expect(error == "plugins.yaml:3:5: modules[1]: module 'other-catch-all' claims the default route (requests without a command), "
            + "which module 'catch-all' already claims; only one module of a node may")

        let node = try makeNode("modules:\n  - module: catch-all\n", registry)
        try await node.start()
        let uncommanded = try await ask(node, [("id", "1")])
        let empty = try await ask(node, [("cmd", "")])
        let unknown = try await ask(node, [("cmd", "nope")])
        let fromURL = try await ask(node, [], uri: "/?cmd=test")
        await node.shutdown()
        #expect(uncommanded.status == 200 && uncommanded.bodyString == "caught by catch-all")
        #expect(empty.bodyString == "caught by catch-all")
        // The route catches requests that name no command, not unknown commands.
        #expect(unknown.status == 400 && unknown.bodyString == "Bad format: command(nope) not support")
        #expect(fromURL.status == 200 && fromURL.bodyString == "OK")
    }

    @Test("without a claim, a request without a command is answered 400 as zbus 6 does")
    func noDefaultRoute() async throws {
        let node = try makeNode("modules: []\n", PluginRegistry())
        try await node.start()
        let reply = try await ask(node, [("id", "1")])
        await node.shutdown()
        #expect(reply.status == 400 && reply.bodyString == "Bad format: command(null) not support")
    }

    @Test("a missing dependency stops start-up with the file, line, column and key of what needs it")
    func missingDependency() throws {
        let error = configError("modules:\n  - module: a\n    needs: [b]\n", journaling)
        #expect(error == "plugins.yaml:3:13: modules[0].needs[0]: this node has no `b` module, which module 'a' needs to test dependencies: "
            + "add `- module: b`, or remove it from `needs`")
        // The node refuses it too, before binding anything.
        #expect(throws: ConfigError.self) { _ = try makeNode("modules:\n  - module: a\n    needs: [b]\n", journaling) }
    }

    @Test("modules that need each other are refused")
    func dependencyCycle() {
        let error = configError("modules:\n  - module: a\n    needs: [b]\n  - module: b\n    needs: [a]\n", journaling)
        #expect(error.hasPrefix("plugins.yaml:3:13: modules[0].needs[0]: modules 'a', 'b' need each other"), "\(error)")
    }

    @Test("modules start in dependency order, run as services, and shut down gracefully in reverse order")
    func lifecycleOrder() async throws {
        let journal = "order-\(UInt64.random(in: 0...UInt64.max))"
        let yaml = """
            modules:
              - { module: a, journal: \(journal), needs: [b] }
              - { module: b, journal: \(journal), needs: [c] }
              - { module: c, journal: \(journal) }
            """
        #expect(try load(yaml, journaling).modules.map { type(of: $0).name } == ["c", "b", "a"])
        let node = try makeNode(yaml, journaling)
        #expect(node.moduleNames == ["c", "b", "a"])
        try await node.start()
        // The services run once the node accepts; wait for all three (an event, not a sleep).
        while Journals.events(journal).filter({ $0.hasPrefix("run ") }).count < 3 { await Task.yield() }
        await node.shutdown()
        let events = Journals.events(journal)
        #expect(Array(events.prefix(3)) == ["start c", "start b", "start a"])
        #expect(Set(events[3..<6]) == ["run a", "run b", "run c"])
        #expect(Array(events.suffix(6)) == ["graceful a", "graceful b", "graceful c", "shutdown a", "shutdown b", "shutdown c"])
    }

    @Test("a module whose service fails stops the node, and run() throws naming the module")
    func failingService() async throws {
        let journal = "failing-\(UInt64.random(in: 0...UInt64.max))"
        let node = try makeNode("modules:\n  - { module: a, journal: \(journal), fail_run: true }\n  - { module: b, journal: \(journal) }\n", journaling)
        await #expect {
            try await node.run()
        } throws: { error in
            guard case NodeError.moduleFailed(module: "a", let reason) = error else { return false }
            return reason == "the test asked the module to fail"
        }
        let events = Journals.events(journal)
        #expect(events.contains("graceful b") && events.suffix(2) == ["shutdown b", "shutdown a"], "\(events)")
        #expect(node.localAddress == nil)
    }
}
