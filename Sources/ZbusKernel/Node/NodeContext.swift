import Logging
import NIOCore

/// What a started node offers its modules.
public struct NodeContext: Sendable {
    /// The node itself, for in-process connections to it (``Node/connectInProcess(remoteAddress:onMessage:onClose:)``):
    /// a module that acts as a client of its own node (RPC workers, proxy adapters) needs no socket. The node outlives
    /// every use a module makes of its context, from ``PluginModule/start(_:)`` to the end of ``PluginModule/shutdown()``.
    public unowned let node: Node
    /// The node's configuration.
    public let config: NodeConfig
    /// The address the node stamps as `server` and reports to trackers (`host:port`).
    public let serverAddress: String
    /// The node's event loops (one per core by default).
    public let eventLoopGroup: any EventLoopGroup
    /// The open client sessions.
    public let sessions: SessionRegistry
    /// The node's logger.
    public let logger: Logger
    /// What every loaded module contributed, by extension point (`context.contributions.values(of: .rpcCodecs)`).
    public let contributions: ModuleContributions
    /// The names of the loaded modules, in start order.
    public let moduleNames: [String]
    /// The certificate of the node's TLS port (`node.tls`), reloaded with it on SIGHUP (``Node/reloadTLS()``): a module
    /// that serves a port of its own with the node's certificate adds its handler from here, and follows the reloads
    /// with nothing to do. `nil` without `node.tls`.
    public let tlsCertificates: TLSCertificateStore?

    /// Whether the node loads the module named `name` (a module that declared a dependency on it can count on it).
    public func hasModule(_ name: String) -> Bool { moduleNames.contains(name) }
}
