import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ZbusClient
import ZbusKernel

/// An MQ-RPC service: workers that consume requests from an MQ and route each answer back to its caller (zbus 6
/// `rpc/mq/Service`).
///
/// ```swift
/// let service = MqRpcService(broker: broker, mq: "Calc", processor: processor)
/// try await service.start()          // creates the MQ (mode MQ|RPC = 9) if missing, starts the workers
/// ...                                // callers: RpcInvoker(MqInvoker(broker: broker, mq: "Calc"))
/// await service.stop()
/// ```
///
/// - Each worker is a consumer connection of its own. It takes one request at a time, answers it, and routes the
///   answer with `cmd: route`, `recver` = the caller's session, `id` = the caller's id, status 200 or 500.
/// - Each worker is a ``MessageClient`` of its own, driven by the client's event loop: a synchronous method is answered
///   right there, and the answer and the next consume leave together in one write. The same over TCP and in process.
/// - A request is acknowledged by the worker's next consume. If a worker dies before that, the node delivers the
///   request to another worker, so a caller gets its answer (at-least-once: a request whose answer was already sent
///   may run twice) or, when no worker is left, its own timeout.
/// - Consumes carry a wait limit (``Configuration/pollTimeout``), so no stale long-poll is ever left on the node.
/// - The broker may be a node over TCP (``SingleBroker``), one embedded in this process (``InProcessBroker``), or a
///   cluster (``HaBroker``): then the MQ is created on every broker and the workers consume from each broker hosting
///   it, including brokers that join later, so callers reach the service through any of them.
public final class MqRpcService: Sendable {
    /// How the service consumes.
    public struct Configuration: Sendable {
        /// Consumer connections, each answering one request at a time.
        public var workers: Int
        /// The MQ's access token (also set as its token when the service creates it).
        public var token: String?
        /// The node's `register_token`, needed to create the MQ on a node that requires one.
        public var registerToken: String?
        /// How long each consume asks the node to wait for a request.
        public var pollTimeout: Duration
        /// How long ``MqRpcService/start()`` waits for the node to count the workers as consumers.
        public var readyTimeout: Duration

        /// Creates a configuration: 4 workers, polls of 10 s.
        public init(workers: Int = 4, token: String? = nil, registerToken: String? = nil, pollTimeout: Duration = .seconds(10),
                    readyTimeout: Duration = .seconds(5)) {
            self.workers = max(1, workers)
            self.token = token
            self.registerToken = registerToken
            self.pollTimeout = pollTimeout
            self.readyTimeout = readyTimeout
        }
    }

    /// The MQ-RPC mode bits: MQ | RPC (9), as zbus 6 services created their queue.
    public static let queueMode: QueueMode = [.mq, .rpc]

    /// Where the MQ lives.
    public let broker: any Broker
    /// The MQ consumed.
    public let mq: String
    /// The request logic.
    public let responder: RpcResponder
    /// The settings.
    public let configuration: Configuration
    private let logger: Logger
    private let state = NIOLockedValueBox(State.idle)

    private let eventLoopGroup: any EventLoopGroup

    private enum State {
        case idle
        case starting
        case running([MqRpcWorker])
        case stopped
    }

    /// For a cluster (``HaBroker``): the brokers workers were started on, and the topology observation.
    private let cluster = NIOLockedValueBox(ClusterState())

    private struct ClusterState {
        var servers: Set<String> = []
        var observation: TopologyObservation?
    }

    /// Creates a service; nothing is consumed until ``start()``.
    ///
    /// - Parameters:
    ///   - broker: the node holding the MQ.
    ///   - mq: the MQ callers produce to.
    ///   - responder: the processor and codecs.
    ///   - configuration: workers, token, poll timeout.
    ///   - eventLoopGroup: where TCP workers run; NIO's shared group by default (a node passes its own).
    ///   - logger: where worker problems are logged.
    public init(broker: any Broker, mq: String, responder: RpcResponder, configuration: Configuration = Configuration(),
                eventLoopGroup: (any EventLoopGroup)? = nil, logger: Logger = Logger(label: "zbus.rpc.mq")) {
        self.broker = broker
        self.eventLoopGroup = eventLoopGroup ?? MultiThreadedEventLoopGroup.singleton
        self.mq = mq
        self.responder = responder
        self.configuration = configuration
        var logger = logger
        logger[metadataKey: "mq"] = "\(mq)"
        self.logger = logger
    }

    /// Creates a service for `processor` speaking `codecs`.
    public convenience init(broker: any Broker, mq: String, processor: RpcProcessor, codecs: RpcCodecSet = .standard,
                            configuration: Configuration = Configuration(), eventLoopGroup: (any EventLoopGroup)? = nil,
                            logger: Logger = Logger(label: "zbus.rpc.mq")) {
        self.init(broker: broker, mq: mq, responder: RpcResponder(processor: processor, codecs: codecs),
                  configuration: configuration, eventLoopGroup: eventLoopGroup, logger: logger)
    }

    /// Creates the MQ if it does not exist (mode MQ|RPC), starts the workers, and returns once the node counts them as
    /// consumers (or ``Configuration/readyTimeout`` passed), so that calls made from then on find the service.
    ///
    /// - Throws: ``RpcHostingError/queueUnavailable(mq:broker:reason:)`` when the MQ cannot be created (a connection
    ///   failure, a wrong `register_token`), or ``RpcHostingError/notStartable(what:state:)``.
    public func start() async throws {
        try state.withLockedValue { state in
            guard case .idle = state else { throw RpcHostingError.notStartable(what: "the MQ-RPC service on '\(mq)'", state: "\(state)") }
            state = .starting
        }
        let admin = MqAdmin(broker: broker, registerToken: configuration.registerToken)
        let before: Int
        do {
            try await admin.create(mq, mode: Self.queueMode, accessToken: configuration.token)
            let info = try await admin.query(mq)
            if let info, !info.queueMode.contains(.rpc) {
                logger.warning("the MQ exists without the RPC mode bit: calls made while no worker runs wait in the queue instead of failing fast", metadata: [
                    "mode": "\(info.mode)",
                ])
            }
            before = info?.consumerCount ?? 0
        } catch {
            state.withLockedValue { $0 = .idle }
            throw RpcHostingError.queueUnavailable(mq: mq, broker: broker.address, reason: "\(error)")
        }

        let workers = configuration.workers
        let settings = MqRpcWorker.Settings(mq: mq, token: configuration.token, registerToken: configuration.registerToken,
                                            pollTimeout: configuration.pollTimeout, replyGrace: .seconds(5))
        if let ha = broker as? HaBroker {
            return try await startClustered(ha, settings: settings)
        }
        let running = (0..<workers).map { index in
            MqRpcWorker(settings: settings, responder: responder, client: makeWorkerClient(), name: "\(mq)-w\(index)", logger: logger)
        }
        let installed = state.withLockedValue { state -> Bool in
            guard case .starting = state else { return false }  // stopped while starting
            state = .running(running)
            return true
        }
        guard installed else {
            for worker in running { await worker.stop() }
            return
        }
        for worker in running { worker.start() }
        logger.debug("MQ-RPC service started", metadata: ["workers": "\(workers)"])

        // Wait until the node counts the workers, so a call made right after `start()` does not find the service down.
        let deadline = ContinuousClock.now + configuration.readyTimeout
        while ContinuousClock.now < deadline && !Task.isCancelled {
            if let info = try? await admin.query(mq), info.consumerCount >= before + workers { return }
            try? await Task.sleep(for: .milliseconds(10))
        }
        logger.notice("the node does not count all workers as consumers yet", metadata: ["workers": "\(workers)"])
    }

    /// Starts workers on every broker hosting the MQ (the create above put it on every broker) and on brokers that
    /// host it later, and waits until the brokers known now count them as consumers.
    private func startClustered(_ ha: HaBroker, settings: MqRpcWorker.Settings) async throws {
        let installed = state.withLockedValue { state -> Bool in
            guard case .starting = state else { return false }
            state = .running([])
            return true
        }
        guard installed else { return }
        let observation = ha.observeTopology { [weak self] topology in
            self?.startWorkers(on: topology, of: ha, settings: settings)
        }
        cluster.withLockedValue { $0.observation = observation }
        if case .stopped = state.withLockedValue({ $0 }) { observation.cancel() }

        let deadline = ContinuousClock.now + configuration.readyTimeout
        let topology = await ha.waitForTopology(timeout: configuration.readyTimeout) { !$0.servers(hosting: self.mq).isEmpty }
        let servers = topology?.servers(hosting: mq) ?? []
        for server in servers {
            guard let single = try? ha.broker(for: server) else { continue }
            let admin = MqAdmin(broker: single, registerToken: configuration.registerToken)
            while ContinuousClock.now < deadline && !Task.isCancelled {
                if let info = try? await admin.query(mq), info.consumerCount >= configuration.workers { break }
                try? await Task.sleep(for: .milliseconds(10))
            }
        }
        logger.debug("MQ-RPC service started on the cluster", metadata: ["brokers": "\(servers)", "workers": "\(configuration.workers)"])
    }

    /// Called on every topology: starts `workers` workers on each broker hosting the MQ that has none yet.
    private func startWorkers(on topology: ClusterTopology, of ha: HaBroker, settings: MqRpcWorker.Settings) {
        let fresh = cluster.withLockedValue { cluster -> [String] in
            let new = topology.servers(hosting: mq).filter { !cluster.servers.contains($0) }
            cluster.servers.formUnion(new)
            return new
        }
        for server in fresh {
            guard let address = try? HostAndPort(parsing: server) else { continue }
            var clientConfiguration = ha.configuration
            clientConfiguration.heartbeatInterval = nil  // the consumes keep the connection busy
            let workers = (0..<configuration.workers).map { index in
                MqRpcWorker(settings: settings, responder: responder,
                            client: MessageClient(address: address, configuration: clientConfiguration, eventLoopGroup: eventLoopGroup.next(), logger: logger),
                            name: "\(mq)@\(server)-w\(index)", logger: logger)
            }
            let added = state.withLockedValue { state -> Bool in
                guard case .running(let running) = state else { return false }
                state = .running(running + workers)
                return true
            }
            guard added else { return }
            logger.debug("MQ-RPC workers started on a broker of the cluster", metadata: ["server": "\(server)"])
            for worker in workers { worker.start() }
        }
    }

    /// Stops the workers: a request being answered is finished and its answer routed; then each worker acknowledges
    /// the request it answered last and closes its connection. Safe to call more than once.
    public func stop() async {
        cluster.withLockedValue { $0.observation }?.cancel()
        let running: [MqRpcWorker] = state.withLockedValue { state in
            defer { state = .stopped }
            if case .running(let workers) = state { return workers }
            return []
        }
        await withTaskGroup(of: Void.self) { group in
            for worker in running { group.addTask { await worker.stop() } }
        }
    }

    /// A connection of its own for one worker: over TCP, on the next event loop of the service's group (with the
    /// broker's settings, no heartbeat); from the broker otherwise (an in-process session).
    private func makeWorkerClient() -> MessageClient {
        guard let single = broker as? SingleBroker, let address = try? HostAndPort(parsing: single.address) else {
            return broker.makeClient(onPush: nil)
        }
        var configuration = single.configuration
        configuration.heartbeatInterval = nil  // the consumes keep the connection busy
        return MessageClient(address: address, configuration: configuration, eventLoopGroup: eventLoopGroup.next(), logger: logger)
    }
}
