import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle
import ZbusClient
import ZbusInProcess
import ZbusKernel
import ZbusRPC

/// The `rpc` plugin module with the built-in services (`calc`), as the `zbus` binary registers it.
public typealias RPCModule = RPCHostModule<BuiltInRpcServices>

/// The `rpc` plugin module: contributes the `json` and `raw` codecs, and hosts the services of `Catalog` as YAML says,
/// over MQ-RPC, direct RPC, or both.
///
/// ```yaml
/// modules:
///   - module: mq
///   - module: rpc
///     codec: json
///     services:
///       - { service: calc, mq: Calc, workers: 8 }          # MQ-RPC on this node's MQ `Calc`
///       - { service: calc, direct: 127.0.0.1:15557 }       # direct RPC on its own port
/// ```
///
/// A service's codec (`codec:`, the module's by default) answers requests whose `content-type` names no other codec;
/// any codec a loaded module contributes to ``ZbusKernel/ExtensionPoint/rpcCodecs`` can be named. A service on this
/// node's MQ makes the module depend on `mq` (started first, stopped last) and reaches it in-process; one with
/// `broker: HOST:PORT` connects there over TCP and keeps retrying while it is not reachable.
public final class RPCHostModule<Catalog: RpcServiceCatalog>: PluginModule {
    /// `rpc`.
    public static var name: String { "rpc" }
    /// One line for `zbus modules`.
    public static var summary: String { "RPC: json and raw codecs, MQ-RPC and direct RPC hosting of services (\(Catalog.services.keys.sorted().joined(separator: ", ")))." }
    /// `codec`, `services`.
    public static var configKeys: [String] { RPCSettings.keys }

    private let settings: RPCSettings
    private let logger: Logger
    private let running = NIOLockedValueBox(Running())

    /// What ``start(_:)`` prepared: the direct servers it bound, and the MQ-RPC services that ``run()`` serves.
    private struct Running {
        var context: NodeContext?
        var mqServices: [(RPCSettings.Service, RpcResponder)] = []
        var servers: [DirectRpcServer] = []
        /// The certificates of direct ports with files of their own (`direct_tls: { cert_file, ... }`), reloaded by
        /// ``reloadTLS()``; ports with the node's certificate share its store, which the node reloads.
        var ownCertificates: [TLSCertificateStore] = []
    }

    /// Reads the module's section.
    ///
    /// - Throws: ``ConfigError`` for an unknown service, a service hosted nowhere, a bad address or number.
    public init(setup: ModuleSetup) throws(ConfigError) {
        settings = try RPCSettings(setup.config, catalog: Catalog.services)
        logger = setup.logger
        // `direct_tls: true` borrows the node's certificate: checked here so that check-config catches its absence.
        if setup.node.tls == nil, let service = settings.services.first(where: { if case .node = $0.directTLS { true } else { false } }),
            let location = service.directTLSLocation
        {
            throw location.error("`direct_tls: true` uses the node's certificate, but the node has no `node.tls`; add `node.tls` or give cert_file and key_file here")
        }
    }

    /// `mq`, for each service on this node's MQ (the first one locates the error when the node lacks it).
    public var dependencies: [ModuleDependency] {
        settings.onThisNode.prefix(1).map { service in
            ModuleDependency(on: "mq", requiredBy: service.mqLocation, purpose: "to hold MQ '\(service.mq ?? "")'",
                             alternative: "set `broker: HOST:PORT`")
        }
    }

    /// `json` and `raw`.
    public func contribute(to contributions: inout ModuleContributions) {
        contributions.add(JsonRpcCodec(), to: .rpcCodecs)
        contributions.add(RawRpcCodec(), to: .rpcCodecs)
    }

    /// Picks each service's codecs and binds the direct RPC servers; the MQ-RPC services start consuming in ``run()``,
    /// once the node accepts.
    ///
    /// - Throws: a ``ConfigError`` naming an unknown codec, or ``RpcHostingError/bindFailed(address:reason:)``.
    public func start(_ context: NodeContext) async throws {
        let codecs = context.contributions.values(of: .rpcCodecs)
        let available = codecs.keys.sorted().joined(separator: ", ")
        var plans: [(RPCSettings.Service, RpcResponder)] = []
        for service in settings.services {
            guard let codec = codecs[service.codec] else {
                throw service.codecLocation.error("unknown codec '\(service.codec)'; available: \(available) (a module can contribute more)")
            }
            let others = codecs.values.filter { $0.name != codec.name }.sorted { $0.name < $1.name }
            let metrics = RpcCallMetrics(service: service.name, factory: context.metricsFactory)
            plans.append((service, RpcResponder(processor: service.processor, codecs: RpcCodecSet(default: codec, others: others),
                                                observer: metrics)))
        }
        running.withLockedValue {
            $0.context = context
            $0.mqServices = plans.filter { $0.0.mq != nil }
        }
        do {
            for (service, responder) in plans {
                guard let direct = service.direct else { continue }
                var serverLogger = logger
                serverLogger[metadataKey: "service"] = "\(service.name)"
                let tls = try Self.directTLS(service, context: context, logger: serverLogger)
                let server: DirectRpcServer
                if let certificates = tls?.store {
                    server = DirectRpcServer(responder: responder, listen: direct, eventLoopGroup: context.eventLoopGroup,
                                             limits: context.config.limits, connectionLimits: context.config.connectionLimits,
                                             certificates: certificates, logger: serverLogger)
                } else {
                    server = DirectRpcServer(responder: responder, listen: direct, eventLoopGroup: context.eventLoopGroup,
                                             limits: context.config.limits, connectionLimits: context.config.connectionLimits,
                                             logger: serverLogger)
                }
                running.withLockedValue {
                    $0.servers.append(server)
                    if let tls, tls.own { $0.ownCertificates.append(tls.store) }
                }
                let address = try await server.start()
                logger.info("direct RPC server listening", metadata: [
                    "service": "\(service.name)", "direct": "\(address)", "codec": "\(service.codec)", "tls": "\(tls != nil)",
                ])
            }
        } catch {
            await shutdown()
            throw error
        }
    }

    /// The certificates of `service`'s direct port: the node's store (`direct_tls: true`, reloaded by the node), a store
    /// of its own files (`own`, reloaded by ``reloadTLS()``), or none.
    private static func directTLS(_ service: RPCSettings.Service, context: NodeContext, logger: Logger) throws
        -> (store: TLSCertificateStore, own: Bool)?
    {
        switch service.directTLS {
        case nil:
            return nil
        case .node:
            // Checked at init: the node has `node.tls`, hence a store once started.
            return context.tlsCertificates.map { ($0, false) }
        case .files(let files):
            do throws(TLSFileError) {
                let store = try TLSCertificateStore(
                    files: files, handshakeTimeoutMilliseconds: context.config.connectionLimits.headerTimeoutMilliseconds, logger: logger)
                return (store, true)
            } catch {
                throw (service.directTLSLocation?.error("\(error)")) ?? ConfigError(file: context.config.source, keyPath: "direct_tls", message: "\(error)")
            }
        }
    }

    /// Reads the certificate files of the direct ports that have their own again (SIGHUP): each store logs its outcome
    /// and keeps its certificate when a file is bad. Ports with the node's certificate follow the node's reload.
    public func reloadTLS() {
        let stores = running.withLockedValue { $0.ownCertificates }
        for store in stores { try? store.reload() }
    }

    /// Whether a service's direct port has certificate files of its own (`direct_tls: { cert_file, ... }`).
    public var hasOwnTLSFiles: Bool {
        settings.services.contains { if case .files = $0.directTLS { true } else { false } }
    }

    /// Serves every MQ-RPC service until graceful shutdown, then stops their workers (each acknowledges its last
    /// answered request; one taken but unanswered goes back to the MQ).
    public func run() async throws {
        let (context, services) = running.withLockedValue { ($0.context, $0.mqServices) }
        guard let context else { return }
        let logger = self.logger
        await withDiscardingTaskGroup { group in
            for (service, responder) in services {
                group.addTask { await MqRpcHosting.serve(service, responder: responder, context: context, logger: logger) }
            }
        }
    }

    /// Stops the direct RPC servers.
    public func shutdown() async {
        let current = running.withLockedValue { running -> Running in
            defer { running = Running() }
            return running
        }
        for server in current.servers { await server.stop() }
    }
}

/// The MQ-RPC side of the module, apart from its generic type (whose catalogue the child tasks need not see).
private enum MqRpcHosting {
    /// Runs one MQ-RPC service: starts it (retrying while its broker is unreachable), waits for graceful shutdown,
    /// stops it.
    static func serve(_ service: RPCSettings.Service, responder: RpcResponder, context: NodeContext, logger: Logger) async {
        guard let mq = service.mq else { return }
        var serviceLogger = logger
        serviceLogger[metadataKey: "service"] = "\(service.name)"
        let logger = serviceLogger
        let broker = Self.broker(for: service, context: context, logger: logger)
        if service.broker == nil {
            return await serveOnLoops(service, mq: mq, responder: responder, broker: broker, context: context, logger: logger)
        }
        let rpcService = MqRpcService(
            broker: broker, mq: mq, responder: responder,
            configuration: .init(workers: service.workers, token: service.token, registerToken: service.registerToken,
                                 pollTimeout: .milliseconds(service.pollTimeoutMilliseconds)),
            eventLoopGroup: context.eventLoopGroup, logger: logger)
        await keepStarting(mq: mq, logger: logger) {
            try await cancelWhenGracefulShutdown { try await rpcService.start() }
            logger.info("MQ-RPC service consuming", metadata: [
                "mq": "\(mq)", "broker": "\(broker.address)", "workers": "\(service.workers)", "codec": "\(service.codec)",
            ])
        }
        await rpcService.stop()
        await broker.close()
    }

    /// ``serve(_:responder:context:logger:)`` for a service on this node's own MQ: creates the MQ as
    /// ``MqRpcService`` does (retrying while the node cannot), then runs the workers on the node's event loops
    /// (``LoopRpcWorker``) until graceful shutdown.
    private static func serveOnLoops(_ service: RPCSettings.Service, mq: String, responder: RpcResponder, broker: any Broker,
                                     context: NodeContext, logger: Logger) async {
        let admin = MqAdmin(broker: broker, registerToken: service.registerToken)
        var workers: [LoopRpcWorker] = []
        await keepStarting(mq: mq, logger: logger) {
            try await cancelWhenGracefulShutdown {
                try await admin.create(mq, mode: MqRpcService.queueMode, accessToken: service.token)
            }
            // An MQ that existed before keeps its mode. One held on disk hands its messages back from the store,
            // without the time it accepted them, so a limit on that wait cannot apply: said at start, not left to
            // surprise.
            if service.queueTimeout != nil, let info = try await admin.query(mq), info.queueMode.isDisjoint(with: [.memory, .rpc, .pubSub]) {
                logger.warning("queue_timeout does not apply to this MQ: it exists as a durable (disk) MQ, whose messages come back from the store without the time it accepted them; remove the MQ so that the service creates it in memory (mode 9), or remove queue_timeout", metadata: [
                    "mq": "\(mq)", "mode": "\(info.mode)",
                ])
            }
            let options = LoopConsumer.Options(
                token: service.token, autoCreate: MqRpcService.queueMode, createWithToken: true,
                registerToken: service.registerToken, pollTimeout: .milliseconds(service.pollTimeoutMilliseconds))
            let expiry = service.queueTimeout.map { LoopRpcWorker.Expiry(service: service.name, mq: mq, limit: $0, logger: logger) }
            workers = try (0..<service.workers).map { _ in
                try LoopRpcWorker(node: context.node, mq: mq, responder: responder, options: options, expiry: expiry, logger: logger)
            }
            for worker in workers { worker.start() }
            logger.info("MQ-RPC service consuming", metadata: [
                "mq": "\(mq)", "broker": "in-process", "workers": "\(service.workers)", "codec": "\(service.codec)",
            ])
        }
        await withDiscardingTaskGroup { group in
            for worker in workers { group.addTask { await worker.stop() } }
        }
        await broker.close()
    }

    /// Runs `start` until it succeeds, then waits for graceful shutdown. A failure (the broker unreachable, the MQ not
    /// creatable yet) is logged and retried after a pause that doubles from 200 ms up to 5 s.
    private static func keepStarting(mq: String, logger: Logger, _ start: () async throws -> Void) async {
        var delay = Duration.milliseconds(200)
        // A broker down for long is retried every 5 s: the first failure at warning, the same again at debug.
        var failures = RepeatedFailureLog()
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                try await start()
                failures.succeeded("MQ-RPC service started", metadata: ["mq": "\(mq)"], logger: logger)
                try? await gracefulShutdown()
                return
            } catch {
                guard !Task.isShuttingDownGracefully && !Task.isCancelled else { return }
                let wait = delay
                failures.failed("MQ-RPC service cannot start yet; retrying", reason: "\(error)", level: .warning,
                                metadata: ["mq": "\(mq)", "retryIn": "\(wait)"], logger: logger)
                do { try await cancelWhenGracefulShutdown { try await Task.sleep(for: wait) } } catch { return }
                delay = min(delay * 2, .seconds(5))
            }
        }
    }

    /// The broker of `service`'s MQ: the one its `broker` names, over TCP, or else this node, in-process.
    private static func broker(for service: RPCSettings.Service, context: NodeContext, logger: Logger) -> any Broker {
        var configuration = ClientConfiguration()
        configuration.heartbeatInterval = nil  // the workers' polls keep the connections busy
        configuration.tls = service.brokerTLS
        guard let address = service.broker else {
            return context.ownNodeBroker(configuration: configuration, poolSize: 2, logger: logger)
        }
        return SingleBroker(address: address, configuration: configuration, poolSize: 2, eventLoopGroup: context.eventLoopGroup, logger: logger)
    }
}
