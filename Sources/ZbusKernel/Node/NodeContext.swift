import Logging
import NIOCore

/// What a started node offers its modules.
public struct NodeContext: Sendable {
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
    /// Every RPC codec contributed by the loaded modules, by name.
    public let rpcCodecs: [String: any RpcCodec]
    /// Every proxy adapter kind contributed by the loaded modules, by kind.
    public let proxyAdapterKinds: [String: any ProxyAdapterFactory]
}
