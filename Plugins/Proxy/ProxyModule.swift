import Logging
import NIOConcurrencyHelpers
import ZbusClient
import ZbusKernel

/// The `proxy` plugin module: serves MQs from legacy services through adapters, inside a broker node or in a node of
/// its own that connects to a remote broker.
///
/// ```yaml
/// modules:
///   - module: mq
///   - module: proxy
///     broker: 127.0.0.1:15555      # optional; absent = this node (which then needs the mq module)
///     adapters:
///       - { name: quotes, kind: http, mq: Quotes, target: "http://127.0.0.1:8080", workers: 4, timeout: 5s }
///       - { name: ledger, kind: tcp, mq: Ledger, target: 127.0.0.1:9000, framing: length4, timeout: 3s }
/// ```
///
/// Contributes the `http` and `tcp` adapter kinds; any loaded module can contribute more through
/// ``PluginModule/proxyAdapterKinds``. Entries of built-in kinds are checked when the file is read (so
/// `zbus check-config` catches their mistakes); entries of contributed kinds once the node starts and knows every
/// module's kinds. Nothing connects before ``start(_:)``.
public final class ProxyModule: PluginModule {
    /// `proxy`.
    public static let name = "proxy"
    /// One line for `zbus modules`.
    public static let summary = "Service bus: adapters (http, tcp, or contributed kinds) that serve an MQ from a legacy service."
    /// `broker`, `adapters`.
    public static let configKeys = ["broker", "adapters"]

    /// The built-in adapter kinds.
    public static let builtInKinds: [String: any ProxyAdapterFactory] = ["http": HttpAdapterFactory(), "tcp": TcpAdapterFactory()]

    private struct Entry: Sendable {
        let item: ConfigValue
        let kind: String
        let built: (ProxyAdapterSettings, any ProxyAdapter)?
    }

    private let broker: HostAndPort?
    private let entries: [Entry]
    private let logger: Logger
    private let running = NIOLockedValueBox<(runners: [ProxyAdapterRunner], broker: (any Broker)?)>(([], nil))

    /// Reads the section; builds the adapters of built-in kinds (which connect nowhere yet).
    ///
    /// - Throws: ``ConfigError`` for an unknown key, a bad value, a duplicate MQ, or an MQ on a node with neither the
    ///   `mq` module nor `broker`.
    public init(setup: ModuleSetup) throws(ConfigError) {
        let config = setup.config
        logger = setup.logger
        broker = try config.address("broker")
        var entries: [Entry] = []
        if let list = config["adapters"] {
            guard case .sequence(let items) = list.kind else {
                throw list.error("expected a list of adapters, each with `kind`, `mq` and the kind's keys, found \(list.typeName)")
            }
            var mqs: Set<String> = []
            for item in items {
                let kind = try Self.kindName(of: item)
                var built: (ProxyAdapterSettings, any ProxyAdapter)?
                if let factory = Self.builtInKinds[kind] {
                    built = try Self.build(item, factory: factory)
                }
                // The common keys of every entry, checked now whatever the kind (so check-config catches them).
                let mq = try ProxyAdapterSettings(ConfigSection(item, allowedKeys: Self.anyKeys(item))).mq
                if !mqs.insert(mq).inserted {
                    throw item.error("two adapters serve MQ '\(mq)'; give each adapter its own MQ (or more `workers`)")
                }
                entries.append(Entry(item: item, kind: kind, built: built))
            }
            if broker == nil, !items.isEmpty, !setup.node.modules.contains(where: { $0.name == "mq" }) {
                throw list.error("this node has no `mq` module to hold the adapters' MQs: add `- module: mq`, or set `broker: HOST:PORT`")
            }
        }
        self.entries = entries
    }

    /// `http` and `tcp`.
    public var proxyAdapterKinds: [String: any ProxyAdapterFactory] { Self.builtInKinds }

    /// Builds the adapters of contributed kinds and starts every adapter's consumers (they keep retrying until the
    /// broker accepts).
    ///
    /// - Throws: ``ConfigError`` naming an adapter kind no loaded module contributes, or a bad key of that kind.
    public func start(_ context: NodeContext) async throws {
        var adapters: [(ProxyAdapterSettings, any ProxyAdapter)] = []
        for entry in entries {
            if let built = entry.built {
                adapters.append(built)
                continue
            }
            guard let factory = context.proxyAdapterKinds[entry.kind] else {
                let known = context.proxyAdapterKinds.keys.sorted().joined(separator: ", ")
                let location = (try? ConfigSection(entry.item, allowedKeys: Self.anyKeys(entry.item)))?["kind"] ?? entry.item
                for (_, adapter) in adapters { await adapter.shutdown() }
                throw location.error("unknown adapter kind '\(entry.kind)'; available: \(known) (load the module that contributes it)")
            }
            do {
                adapters.append(try Self.build(entry.item, factory: factory))
            } catch {
                for (_, adapter) in adapters { await adapter.shutdown() }
                throw error
            }
        }
        guard !adapters.isEmpty else { return }
        let address = broker ?? Self.ownAddress(context)
        var configuration = ClientConfiguration()
        configuration.heartbeatInterval = nil  // the consumers' polls keep the connections busy
        let client = SingleBroker(address: address, configuration: configuration, poolSize: 2,
                                  eventLoopGroup: context.eventLoopGroup, logger: logger)
        var runners: [ProxyAdapterRunner] = []
        for (settings, adapter) in adapters {
            let runner = ProxyAdapterRunner(settings: settings, adapter: adapter, broker: client, logger: logger)
            runner.start()
            runners.append(runner)
        }
        running.withLockedValue { $0 = (runners, client) }
        logger.info("proxy started", metadata: ["broker": "\(address)", "adapters": "\(adapters.map(\.0.name).joined(separator: ","))"])
    }

    /// Stops the adapters (answers in progress are routed first) and closes their connections.
    public func shutdown() async {
        let current = running.withLockedValue { running in
            defer { running = ([], nil) }
            return running
        }
        await withTaskGroup(of: Void.self) { group in
            for runner in current.runners { group.addTask { await runner.stop() } }
        }
        await current.broker?.close()
    }

    private static func kindName(of item: ConfigValue) throws(ConfigError) -> String {
        let section = try ConfigSection(item, allowedKeys: anyKeys(item))
        guard let kind = try section.string("kind") else {
            throw item.error("missing key 'kind': the adapter kind (\(builtInKinds.keys.sorted().joined(separator: ", ")), or one a loaded module contributes)")
        }
        return kind
    }

    /// Every key present (for reading `kind` and `mq` before the kind's keys are known).
    private static func anyKeys(_ item: ConfigValue) -> [String] {
        if case .mapping(let pairs) = item.kind { return pairs.map(\.key) }
        return []
    }

    private static func build(_ item: ConfigValue, factory: any ProxyAdapterFactory) throws(ConfigError) -> (ProxyAdapterSettings, any ProxyAdapter) {
        let section = try ConfigSection(item, allowedKeys: ProxyAdapterSettings.keys + factory.configKeys)
        let settings = try ProxyAdapterSettings(section)
        return (settings, try factory.makeAdapter(config: section))
    }

    /// Where this node's own MQs are reached (as the `rpc` module does it).
    private static func ownAddress(_ context: NodeContext) -> HostAndPort {
        let stamped = try? HostAndPort(parsing: context.serverAddress)
        if context.config.advertise != nil, context.config.listen.port != 0 {
            let host = context.config.listen.host == "0.0.0.0" || context.config.listen.host == "::" ? "127.0.0.1" : context.config.listen.host
            return HostAndPort(host: host, port: context.config.listen.port)
        }
        return stamped ?? HostAndPort(host: "127.0.0.1", port: context.config.listen.port)
    }
}
