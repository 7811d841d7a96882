import Logging
import NIOConcurrencyHelpers
import ZbusClient
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
/// any codec a loaded module contributes (``PluginModule/rpcCodecs``) can be named. MQ-RPC workers connect to the node
/// holding the MQ (this one unless `broker` says otherwise) once the node accepts connections, and keep retrying if
/// it is not reachable yet.
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

    private struct Running {
        var starters: [Task<Void, Never>] = []
        var services: [MqRpcService] = []
        var brokers: [any Broker] = []
        var servers: [DirectRpcServer] = []
    }

    /// Reads the module's section.
    ///
    /// - Throws: ``ConfigError`` for an unknown service, a service hosted nowhere, a bad address or number, or an MQ on
    ///   a node without the `mq` module.
    public init(setup: ModuleSetup) throws(ConfigError) {
        settings = try RPCSettings(setup.config, node: setup.node, catalog: Catalog.services)
        logger = setup.logger
    }

    /// `json` and `raw`.
    public var rpcCodecs: [any RpcCodec] { [JsonRpcCodec(), RawRpcCodec()] }

    /// Binds the direct RPC servers and launches the MQ-RPC services (which start consuming once the node accepts).
    ///
    /// - Throws: a ``ConfigError`` naming an unknown codec, or ``RpcHostingError/bindFailed(address:reason:)``.
    public func start(_ context: NodeContext) async throws {
        let available = context.rpcCodecs.keys.sorted().joined(separator: ", ")
        var plans: [(RPCSettings.Service, RpcResponder)] = []
        for service in settings.services {
            guard let codec = context.rpcCodecs[service.codec] else {
                throw service.codecLocation.error("unknown codec '\(service.codec)'; available: \(available) (a module can contribute more)")
            }
            let others = context.rpcCodecs.values.filter { $0.name != codec.name }.sorted { $0.name < $1.name }
            plans.append((service, RpcResponder(processor: service.processor, codecs: RpcCodecSet(default: codec, others: others))))
        }
        do {
            for (service, responder) in plans {
                if let direct = service.direct {
                    var serverLogger = logger
                    serverLogger[metadataKey: "service"] = "\(service.name)"
                    let server = DirectRpcServer(responder: responder, listen: direct, eventLoopGroup: context.eventLoopGroup,
                                                 limits: context.config.limits, connectionLimits: context.config.connectionLimits,
                                                 logger: serverLogger)
                    running.withLockedValue { $0.servers.append(server) }
                    let address = try await server.start()
                    logger.info("direct RPC server listening", metadata: ["service": "\(service.name)", "direct": "\(address)", "codec": "\(service.codec)"])
                }
                if let mq = service.mq {
                    launch(service, mq: mq, responder: responder, context: context)
                }
            }
        } catch {
            await shutdown()
            throw error
        }
    }

    private func launch(_ service: RPCSettings.Service, mq: String, responder: RpcResponder, context: NodeContext) {
        let address = service.broker ?? Self.ownAddress(context)
        var configuration = ClientConfiguration()
        configuration.heartbeatInterval = nil  // the workers' polls keep the connections busy
        let broker = SingleBroker(address: address, configuration: configuration, poolSize: 2, eventLoopGroup: context.eventLoopGroup, logger: logger)
        var serviceLogger = logger
        serviceLogger[metadataKey: "service"] = "\(service.name)"
        let rpcService = MqRpcService(
            broker: broker, mq: mq, responder: responder,
            configuration: .init(workers: service.workers, token: service.token, registerToken: service.registerToken,
                                 pollTimeout: .milliseconds(service.pollTimeoutMilliseconds)),
            eventLoopGroup: context.eventLoopGroup, logger: serviceLogger)
        let logger = serviceLogger
        let starter = Task {
            var delay = Duration.milliseconds(200)
            while !Task.isCancelled {
                do {
                    try await rpcService.start()
                    logger.info("MQ-RPC service consuming", metadata: [
                        "mq": "\(mq)", "broker": "\(address)", "workers": "\(service.workers)", "codec": "\(service.codec)",
                    ])
                    return
                } catch {
                    logger.warning("MQ-RPC service cannot start yet; retrying", metadata: ["mq": "\(mq)", "error": "\(error)", "retryIn": "\(delay)"])
                    do { try await Task.sleep(for: delay) } catch { return }
                    delay = min(delay * 2, .seconds(5))
                }
            }
        }
        running.withLockedValue {
            $0.starters.append(starter)
            $0.services.append(rpcService)
            $0.brokers.append(broker)
        }
    }

    /// Stops the MQ-RPC workers (each acknowledges its last answered request; one taken but unanswered goes back to
    /// the MQ) and the direct RPC servers.
    public func shutdown() async {
        let current = running.withLockedValue { running -> Running in
            defer { running = Running() }
            return running
        }
        for starter in current.starters { starter.cancel() }
        for starter in current.starters { await starter.value }
        for service in current.services { await service.stop() }
        for broker in current.brokers { await broker.close() }
        for server in current.servers { await server.stop() }
    }

    /// Where this node's own MQs are reached: the address it stamps, unless `advertise` names another host.
    private static func ownAddress(_ context: NodeContext) -> HostAndPort {
        let stamped = try? HostAndPort(parsing: context.serverAddress)
        if context.config.advertise != nil, context.config.listen.port != 0 {
            let host = context.config.listen.host == "0.0.0.0" || context.config.listen.host == "::" ? "127.0.0.1" : context.config.listen.host
            return HostAndPort(host: host, port: context.config.listen.port)
        }
        return stamped ?? HostAndPort(host: "127.0.0.1", port: context.config.listen.port)
    }
}
