import Logging

/// A plugin module: a named bundle of command handlers, RPC codecs and proxy adapter kinds that a node loads when its
/// YAML names it.
///
/// Conform a class, then register it in one line (`registry.register(MyModule.self)`) and name it in YAML
/// (`- module: my-module`). The kernel checks the section's keys against ``configKeys`` before calling
/// ``init(setup:)``, which must only read configuration: files, sockets and tasks belong in ``start(_:)``.
public protocol PluginModule: AnyObject, Sendable {
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

    /// The commands this module answers, by `cmd` value.
    var commands: [String: any CommandHandler] { get }
    /// The RPC codecs this module contributes, by name.
    var rpcCodecs: [any RpcCodec] { get }
    /// The proxy adapter kinds this module contributes, by kind name.
    var proxyAdapterKinds: [String: any ProxyAdapterFactory] { get }

    /// Starts the module once the node is bound and before it accepts connections.
    func start(_ context: NodeContext) async throws
    /// Stops the module: finish or cancel work in flight, flush and close files.
    func shutdown() async
    /// Told when any connection closes (for example to release what the session held).
    func sessionDidClose(_ session: Session)
}

extension PluginModule {
    /// No keys by default.
    public static var configKeys: [String] { [] }
    /// No commands by default.
    public var commands: [String: any CommandHandler] { [:] }
    /// No codecs by default.
    public var rpcCodecs: [any RpcCodec] { [] }
    /// No adapter kinds by default.
    public var proxyAdapterKinds: [String: any ProxyAdapterFactory] { [:] }
    /// Nothing to start by default.
    public func start(_ context: NodeContext) async throws {}
    /// Nothing to stop by default.
    public func shutdown() async {}
    /// Nothing to release by default.
    public func sessionDidClose(_ session: Session) {}
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
