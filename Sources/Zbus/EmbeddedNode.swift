@_exported import ZbusClient
import Logging

/// A full zbus node inside a Swift program: the same kernel and standard modules as the `zbus` binary, listening on
/// its port for other processes, and reachable from this process without a socket.
///
/// ```swift
/// let node = try await ZbusNode(store: "./data").start()    // 127.0.0.1, an OS-chosen port, the `mq` module
/// let broker = node.broker()                               // in-process: no socket
/// try await Producer(broker: broker, mq: "Orders").send("order 42")
/// print(node.address!)                                     // other programs connect here
/// await node.stop()
/// ```
public final class ZbusNode: Sendable {
    /// The node itself (its configuration, sessions and lifecycle).
    public let node: Node

    /// Wraps a node built from `config`, with the modules of `registry`.
    ///
    /// - Throws: ``ConfigError`` when a module named in `config` is unknown or rejects its section.
    public init(config: NodeConfig, registry: PluginRegistry = .standard, logger: Logger? = nil) throws(ConfigError) {
        node = try Node(config: config, registry: registry, logger: logger)
    }

    /// Builds a node from node YAML (the format of `zbus --config`).
    ///
    /// - Throws: ``ConfigError`` naming the line and key that are wrong.
    public convenience init(yaml: String, registry: PluginRegistry = .standard, logger: Logger? = nil) throws(ConfigError) {
        try self.init(config: try NodeConfig.parse(yaml: yaml, file: "<embedded>"), registry: registry, logger: logger)
    }

    /// Builds a node with the `mq` module, from a few settings.
    ///
    /// - Parameters:
    ///   - listen: where other processes connect (`HOST:PORT`); port 0 asks the OS for a free port.
    ///   - store: the store directory.
    ///   - fsync: the MQ store's fsync policy: `none`, `interval` or `always`.
    ///   - name: the node's name (logs, `in-process:NAME` addresses).
    ///   - logLevel: the node's log level.
    /// - Throws: ``ConfigError`` for a bad address or fsync policy.
    public convenience init(listen: String = "127.0.0.1:0", store: String, fsync: String = "interval", name: String = "embedded",
                            logLevel: Logger.Level = .notice, logger: Logger? = nil) throws(ConfigError) {
        let yaml = """
            node:
              name: \(Self.quoted(name))
              listen: \(Self.quoted(listen))
              store: \(Self.quoted(store))
              log_level: \(logLevel.rawValue)
            modules:
              - module: mq
                fsync: \(Self.quoted(fsync))
            """
        try self.init(yaml: yaml, logger: logger)
    }

    /// Starts the node (binds, starts the modules, accepts connections) and returns it, so that
    /// `let node = try await ZbusNode(...).start()` reads as one step.
    ///
    /// - Throws: ``NodeError`` when the port cannot be bound or a module fails to start.
    @discardableResult
    public func start() async throws -> ZbusNode {
        try await node.start()
        return self
    }

    /// The bound address once started (with port 0, the port the OS chose).
    public var address: HostAndPort? { node.localAddress }

    /// A broker that talks to this node in-process, without a socket.
    ///
    /// - Parameters:
    ///   - configuration: the settings of its sessions.
    ///   - poolSize: how many sessions requests are spread over.
    public func broker(configuration: ClientConfiguration = ClientConfiguration(), poolSize: Int = 2) -> InProcessBroker {
        InProcessBroker(node: node, configuration: configuration, poolSize: poolSize)
    }

    /// Stops the node gracefully (the same as SIGTERM to the binary): stops accepting, lets the modules close their
    /// stores, closes every connection and in-process session. Safe to call more than once.
    public func stop() async {
        await node.shutdown()
    }

    /// Runs the node until ``stop()`` is called, or under a `ServiceGroup` until graceful shutdown.
    public func run() async throws {
        try await node.run()
    }

    private static func quoted(_ text: String) -> String {
        var out = "\""
        for character in text {
            switch character {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            default: out.append(character)
            }
        }
        return out + "\""
    }
}
