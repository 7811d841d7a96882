import Logging
import NIOConcurrencyHelpers
import ZbusClient
import ZbusKernel
import ZbusProxy

/// The `proxy` plugin module: serves MQs from legacy services through adapters, inside a broker node or in a node of
/// its own that connects to a remote broker.
///
/// ```yaml
/// modules:
///   - module: mq
///   - module: proxy
///     broker: 127.0.0.1:15555      # optional; absent = this node (which then needs the mq module)
///     broker_tls: { ca_file: ca.pem }  # optional: reach `broker` in TLS (its node.tls port; docs/tls.md)
///     adapters:
///       - { name: quotes, kind: http, mq: Quotes, target: "http://127.0.0.1:8080", workers: 4, timeout: 5s }
///       - { name: ledger, kind: tcp, mq: Ledger, target: 127.0.0.1:9000, framing: length4, timeout: 3s }
/// ```
///
/// Contributes the `http` and `tcp` adapter kinds; any loaded module can contribute more to
/// ``ZbusKernel/ExtensionPoint/proxyAdapterKinds``. Entries of built-in kinds are checked when the file is read (so
/// `zbus check-config` catches their mistakes); entries of contributed kinds once the node starts and knows every
/// module's kinds. Without `broker`, the module depends on this node's `mq` module and reaches it in-process. Nothing
/// connects before ``run()``.
public final class ProxyModule: PluginModule {
    /// `proxy`.
    public static let name = "proxy"
    /// One line for `zbus modules`.
    public static let summary = "Service bus: adapters (http, tcp, or contributed kinds) that serve an MQ from a legacy service."
    /// `broker`, `broker_tls`, `adapters`.
    public static let configKeys = ["broker", "broker_tls", "adapters"]

    /// The built-in adapter kinds.
    public static let builtInKinds: [String: any ProxyAdapterFactory] = ["http": HttpAdapterFactory(), "tcp": TcpAdapterFactory()]

    private struct Entry: Sendable {
        let item: ConfigValue
        let kind: String
        let built: (ProxyAdapterSettings, any ProxyAdapter)?
    }

    private let broker: HostAndPort?
    /// TLS for the connections to `broker`; `nil` for plain TCP.
    private let brokerTLS: ClientTLS?
    private let entries: [Entry]
    /// The `adapters` list, where a missing `mq` module is reported.
    private let adaptersValue: ConfigValue?
    private let logger: Logger
    private let running = NIOLockedValueBox<(runners: [ProxyAdapterRunner], broker: (any Broker)?)>(([], nil))

    /// Reads the section; builds the adapters of built-in kinds (which connect nowhere yet).
    ///
    /// - Throws: ``ConfigError`` for an unknown key, a bad value or a duplicate MQ.
    public init(setup: ModuleSetup) throws(ConfigError) {
        let config = setup.config
        logger = setup.logger
        broker = try config.address("broker")
        brokerTLS = try config.clientTLS("broker_tls")
        if brokerTLS != nil, broker == nil, let value = config["broker_tls"] {
            throw value.error("`broker_tls` is how to reach `broker`; add `broker: HOST:PORT` or remove it")
        }
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
        }
        self.entries = entries
        adaptersValue = config["adapters"]
    }

    /// `mq`, when adapters serve MQs of this node (no `broker`).
    public var dependencies: [ModuleDependency] {
        guard broker == nil, !entries.isEmpty, let adaptersValue else { return [] }
        return [ModuleDependency(on: "mq", requiredBy: adaptersValue, purpose: "to hold the adapters' MQs",
                                 alternative: "set `broker: HOST:PORT`")]
    }

    /// `http` and `tcp`.
    public func contribute(to contributions: inout ModuleContributions) {
        for (kind, factory) in Self.builtInKinds.sorted(by: { $0.key < $1.key }) {
            contributions.add(factory, named: kind, to: .proxyAdapterKinds)
        }
    }

    /// Builds the adapters of contributed kinds and the runners of every adapter, which consume from ``run()`` on.
    ///
    /// - Throws: ``ConfigError`` naming an adapter kind no loaded module contributes, or a bad key of that kind.
    public func start(_ context: NodeContext) async throws {
        var adapters: [(ProxyAdapterSettings, any ProxyAdapter)] = []
        for entry in entries {
            if let built = entry.built {
                adapters.append(built)
                continue
            }
            let kinds = context.contributions.values(of: .proxyAdapterKinds)
            guard let factory = kinds[entry.kind] else {
                let known = kinds.keys.sorted().joined(separator: ", ")
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
        var configuration = ClientConfiguration()
        configuration.heartbeatInterval = nil  // the consumers' polls keep the connections busy
        configuration.tls = brokerTLS
        let client: any Broker
        var localNode: Node?
        if let broker {
            client = SingleBroker(address: broker, configuration: configuration, poolSize: 2,
                                  eventLoopGroup: context.eventLoopGroup, logger: logger)
        } else {
            client = context.ownNodeBroker(configuration: configuration, poolSize: 2, logger: logger)
            localNode = context.node
        }
        let runners = adapters.map { settings, adapter in
            ProxyAdapterRunner(settings: settings, adapter: adapter, broker: client, logger: logger,
                               metricsFactory: context.metricsFactory, localNode: localNode)
        }
        running.withLockedValue { $0 = (runners, client) }
        logger.info("proxy started", metadata: ["broker": "\(client.address)", "adapters": "\(adapters.map(\.0.name).joined(separator: ","))"])
    }

    /// Runs every adapter until graceful shutdown; each then stops (answers in progress are routed first).
    public func run() async throws {
        let runners = running.withLockedValue { $0.runners }
        await withDiscardingTaskGroup { group in
            for runner in runners { group.addTask { await runner.run() } }
        }
    }

    /// Stops the adapters that never ran and closes the adapters' connections.
    public func shutdown() async {
        let current = running.withLockedValue { running in
            defer { running = ([], nil) }
            return running
        }
        await withDiscardingTaskGroup { group in
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
}
