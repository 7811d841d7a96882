import Logging
import ServiceLifecycle

/// A plugin module: a named bundle of contributions (commands, RPC codecs, proxy adapter kinds, anything a module
/// declares an ``ExtensionPoint`` for) and, if it needs one, a long-running service, that a node loads when its YAML
/// names it.
///
/// Conform a class, register it in one line (`registry.registering(MyModule.self)`) and name it in YAML
/// (`- module: my-module`):
///
/// ```swift
/// final class EchoModule: PluginModule {
///     static let name = "echo"
///     static let summary = "Answers `echo` with the request's body."
///     init(setup: ModuleSetup) throws(ConfigError) {}
///     func contribute(to contributions: inout ModuleContributions) {
///         contributions.add(ClosureCommandHandler { request, session in
///             session.send(request.reply(status: 200, body: request.bodyString))
///         }, named: "echo", to: .commands)
///     }
/// }
/// ```
///
/// A node drives its modules through four steps:
/// 1. ``init(setup:)`` reads the module's section (already checked against ``configKeys``) and declares
///    ``dependencies``; it only reads configuration. ``contribute(to:)`` then adds the module's values, checked for
///    conflicts. Both run for `zbus check-config` too.
/// 2. ``start(_:)``, in dependency order, once the node is bound and before it accepts connections: open files, bind
///    ports, read what other modules contributed (``NodeContext/contributions``).
/// 3. ``run()`` (the module is a ServiceLifecycle `Service`), once the node accepts connections, in a `ServiceGroup`
///    with the other modules: long-running loops live here, and end at graceful shutdown, which reaches the modules in
///    reverse dependency order. A module without loops keeps the default, which returns at once.
/// 4. ``shutdown()``, in reverse dependency order, after every ``run()`` has returned: flush and close.
public protocol PluginModule: AnyObject, Service {
    /// The name used in YAML (`- module: NAME`).
    static var name: String { get }
    /// One line saying what the module does (shown by `zbus modules` and the README).
    static var summary: String { get }
    /// The keys the module's section accepts, besides `module`.
    static var configKeys: [String] { get }

    /// Builds the module from its configuration section.
    ///
    /// - Throws: ``ConfigError`` (use the accessors of ``ModuleSetup/config``, which locate errors for you).
    init(setup: ModuleSetup) throws(ConfigError)

    /// The modules this one needs on the same node, as its configuration asks (for example `mq` to hold the MQs it
    /// serves). A missing one stops start-up with a ``ConfigError`` at ``ModuleDependency/requiredBy``.
    var dependencies: [ModuleDependency] { get }

    /// Adds what the module contributes to the node's extension points (see ``ModuleContributions``).
    func contribute(to contributions: inout ModuleContributions)

    /// Starts the module once the node is bound and the modules it depends on have started, before the node accepts
    /// connections.
    func start(_ context: NodeContext) async throws
    /// Stops the module after its ``run()`` returned: finish or cancel work in flight, flush and close files.
    func shutdown() async
    /// Told when any connection closes (for example to release what the session held).
    func sessionDidClose(_ session: Session)
    /// Reads the module's own TLS files again (SIGHUP, ``Node/reloadTLS()``), for a port of its own: connections
    /// accepted from now on get the new certificate. A bad file must be logged, naming it, and the certificate in use
    /// kept; the module goes on either way. A port that uses the node's certificate
    /// (``NodeContext/tlsCertificates``) needs nothing here.
    func reloadTLS()
    /// Whether the module has TLS files of its own to reload (``reloadTLS()``), known from its configuration: the
    /// `zbus` binary then handles SIGHUP even on a node without `node.tls`.
    var hasOwnTLSFiles: Bool { get }
}

extension PluginModule {
    /// No keys by default.
    public static var configKeys: [String] { [] }
    /// No dependencies by default.
    public var dependencies: [ModuleDependency] { [] }
    /// No contributions by default.
    public func contribute(to contributions: inout ModuleContributions) {}
    /// Nothing to start by default.
    public func start(_ context: NodeContext) async throws {}
    /// Nothing runs by default: the module's service ends at once, and the node keeps running.
    public func run() async throws {}
    /// Nothing to stop by default.
    public func shutdown() async {}
    /// Nothing to release by default.
    public func sessionDidClose(_ session: Session) {}
    /// No TLS files of its own by default.
    public func reloadTLS() {}
    /// No TLS files of its own by default.
    public var hasOwnTLSFiles: Bool { false }
}

/// What a module gets at construction: its own section and the node-wide settings.
public struct ModuleSetup: Sendable {
    /// The module's section, already checked against ``PluginModule/configKeys``.
    public let config: ConfigSection
    /// The whole node configuration (store directory, limits, trackers...).
    public let node: NodeConfig
    /// A logger labelled for the module.
    public let logger: Logger

    /// Creates a setup.
    public init(config: ConfigSection, node: NodeConfig, logger: Logger) {
        self.config = config
        self.node = node
        self.logger = logger
    }
}
