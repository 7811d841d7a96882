import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A broker for a cluster: it follows the trackers (`sub_all`) to know which brokers host which MQ, and sends each
/// request where it belongs (zbus 6.3 `HaBroker`, wire-compatible with its trackers).
///
/// ```swift
/// let broker = try ZbusBroker.connect("127.0.0.1:16666;127.0.0.1:16667")   // the trackers
/// try await Producer(broker: broker, mq: "Orders").send("order 42")        // to a broker hosting Orders
/// ```
///
/// | request | where it goes |
/// |---|---|
/// | `produce` (acknowledged) | the least loaded broker hosting the MQ; if that broker dies before it answers, the same message is sent to another one hosting the MQ |
/// | `produce` to a pub/sub MQ | every broker hosting the MQ (each has its own subscribers) |
/// | `produce` with `ack: 0` (MQ-RPC calls) | a broker hosting the MQ where a consumer is connected |
/// | `create_mq` | every known broker, so that any of them can take over |
/// | `remove_mq`, `add_key`, `remove_key` | every broker hosting the MQ |
/// | `route` | the broker named in `server` (which HA consumers set on what they deliver), or every broker |
/// | anything else (`query_mq`, `test`, ...) | one broker, hosting the MQ if the request names one |
///
/// ``Consumer`` and `MqRpcService` consume from **every** broker hosting their MQ, starting on brokers that join later.
///
/// **Delivery: at least once.** An acknowledged produce whose broker closed the connection or went silent before
/// answering may have been stored there; it is sent again to another broker, so a consumer can get it twice (with the
/// same `id`, by which it can recognise the duplicate). Messages stored on a broker that dies wait there until it is
/// back: consumers pick them up when it restarts on the same store.
///
/// **Topology.** The views of all trackers are merged. With every tracker down the last topology stays in use; a
/// broker that fails a request is avoided for ``HaConfiguration/avoidFailedServerFor`` or until a tracker announces it
/// again.
public final class HaBroker: Broker {
    /// The tracker list, as given (`h1:p1;h2:p2`).
    public let address: String
    /// The trackers.
    public let trackers: [HostAndPort]
    /// The settings of every connection.
    public let configuration: ClientConfiguration
    /// How the broker follows the trackers and fails over.
    public let haConfiguration: HaConfiguration

    let watcher: TopologyWatcher
    private let serverConfiguration: ClientConfiguration
    private let eventLoopGroup: (any EventLoopGroup)?
    private let logger: Logger
    private let state: NIOLockedValueBox<State>
    private let turn = ManagedAtomicCounter()
    private let pool: ClientPool

    private struct State {
        var brokers: [String: ConnectorBroker] = [:]
        var local: [String: ServerChoice.Local] = [:]
        var closed = false
    }

    /// Creates a broker that follows `trackers`; the subscriptions open at once, connections to brokers at the first
    /// request.
    ///
    /// - Parameters:
    ///   - trackers: the trackers (at least one).
    ///   - configuration: the settings of every connection (to trackers and brokers).
    ///   - haConfiguration: failover settings.
    ///   - eventLoopGroup: where the connections run; NIO's shared singleton group by default.
    ///   - logger: where topology changes and failovers are logged.
    public init(trackers: [HostAndPort], configuration: ClientConfiguration = ClientConfiguration(),
                haConfiguration: HaConfiguration = HaConfiguration(), eventLoopGroup: (any EventLoopGroup)? = nil,
                logger: Logger = Logger(label: "zbus.client.ha")) {
        self.trackers = trackers
        self.address = trackers.map(\.description).joined(separator: ";")
        self.configuration = configuration
        self.haConfiguration = haConfiguration
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
        var serverConfiguration = configuration
        serverConfiguration.connectTimeout = min(configuration.connectTimeout, haConfiguration.serverConnectTimeout)
        // A broker that died is not redialled in the background: requests go elsewhere, and the tracker says when
        // it is back.
        serverConfiguration.reconnectEagerly = false
        self.serverConfiguration = serverConfiguration
        let group = eventLoopGroup ?? MultiThreadedEventLoopGroup.singleton
        let state = NIOLockedValueBox(State())
        self.state = state
        watcher = TopologyWatcher(trackers: trackers, configuration: configuration, ha: haConfiguration, eventLoop: group.next(),
                                  logger: logger, onServerJoin: { server in
                                      state.withLockedValue { $0.local[server]?.avoidUntil = nil }
                                  })
        let connector = HaConnector(watcher: watcher, address: trackers.map(\.description).joined(separator: ";"))
        pool = ClientPool(size: haConfiguration.poolSize) {
            MessageClient(connector: connector, configuration: serverConfiguration, eventLoopGroup: eventLoopGroup, logger: logger, onPush: nil)
        }
        watcher.start()
    }

    /// The merged topology now (empty until a tracker answered).
    public var topology: ClusterTopology { watcher.topology }

    /// The current topology, then every change, until the iterating task stops or the broker is closed.
    public func topologyUpdates() -> AsyncStream<ClusterTopology> { watcher.updates() }

    /// Calls `observer` with the current topology and then with every change, on an event loop (it must not block),
    /// until the returned observation is cancelled or the broker is closed: for code driven by callbacks rather than
    /// tasks, such as a service that starts workers on brokers as they join.
    public func observeTopology(_ observer: @escaping @Sendable (ClusterTopology) -> Void) -> TopologyObservation {
        let watcher = self.watcher
        let token = watcher.addObserver(observer)
        return TopologyObservation { watcher.removeObserver(token) }
    }

    /// Waits until the topology satisfies `condition`, at most `timeout`.
    ///
    /// - Returns: the topology that satisfied it, or `nil` after `timeout`.
    public func waitForTopology(timeout: Duration, _ condition: @escaping @Sendable (ClusterTopology) -> Bool) async -> ClusterTopology? {
        let result = NIOLockedValueBox<ClusterTopology?>(nil)
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await topology in self.topologyUpdates() where condition(topology) {
                    result.withLockedValue { $0 = topology }
                    return
                }
            }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            group.cancelAll()
        }
        return result.withLockedValue { $0 }
    }

    // MARK: Broker

    /// Sends `request` where it belongs (see the table above) and waits for its reply.
    public nonisolated(nonsending) func send(_ request: Message, timeout: Duration?) async throws -> Message {
        switch request.cmd {
        case "produce":
            let mq = request.mq
            if !request.ack {
                return try await sendToOne(request, mq: mq, timeout: timeout, preferConsumers: true, retryAfterWrite: false)
            }
            if let mq, topology.mode(of: mq)?.contains(.pubSub) == true {
                return try await sendToEvery(request, servers: topology.servers(hosting: mq), timeout: timeout)
            }
            return try await sendToOne(request, mq: mq, timeout: timeout, preferConsumers: false, retryAfterWrite: true)
        case "create_mq":
            let servers = await watcher.firstTopology(within: haConfiguration.firstTopologyTimeout).serverAddresses
            return try await sendToEvery(request, servers: servers, timeout: timeout)
        case "remove_mq", "add_key", "remove_key":
            let topology = await watcher.firstTopology(within: haConfiguration.firstTopologyTimeout)
            let mq = request.headers[HeaderName.mqName] ?? request.mq
            let hosting = mq.map { topology.servers(hosting: $0) } ?? []
            return try await sendToEvery(request, servers: hosting.isEmpty ? topology.serverAddresses : hosting, timeout: timeout)
        case "route":
            if let server = request.server { return try await broker(for: server).send(request, timeout: timeout) }
            return try await sendToOne(request, mq: nil, timeout: timeout, preferConsumers: false, retryAfterWrite: false)
        default:
            return try await sendToOne(request, mq: request.mq, timeout: timeout, preferConsumers: false, retryAfterWrite: false)
        }
    }

    /// Sends `message`, which gets no reply: a `route` to the broker named in its `server` header (or to every
    /// broker), a `produce` with `ack: 0` to a broker hosting its MQ, anything else to one broker.
    public nonisolated(nonsending) func sendOneWay(_ message: Message) async throws {
        if message.cmd == "route" {
            if let server = message.server { return try await broker(for: server).sendOneWay(message) }
            let servers = await watcher.firstTopology(within: haConfiguration.firstTopologyTimeout).serverAddresses
            guard !servers.isEmpty else { throw noBroker(mq: nil, reason: "no tracker has named a broker yet") }
            var firstError: (any Error)?
            for server in servers {
                do { try await broker(for: server).sendOneWay(message) } catch { firstError = firstError ?? error }
            }
            if let firstError, servers.count == 1 { throw firstError }
            return
        }
        let preferConsumers = message.cmd == "produce"
        _ = try await failover(mq: message.mq, preferConsumers: preferConsumers, retryAfterWrite: false) { broker in
            try await broker.sendOneWay(message)
            return message
        }
    }

    /// A connection to the least loaded broker (chosen when it connects; a reconnect may land on another one).
    public func pooledClient() -> MessageClient { pool.pick() }

    /// A new connection of its own to one broker, chosen when it connects. ``Consumer`` and `MqRpcService` do not use
    /// this: they consume from every broker hosting their MQ.
    public func makeClient(onPush: (@Sendable (Message) -> Void)?) -> MessageClient {
        MessageClient(connector: HaConnector(watcher: watcher, address: address), configuration: serverConfiguration,
                      eventLoopGroup: eventLoopGroup, logger: logger, onPush: onPush)
    }

    /// Closes the tracker subscriptions and every broker connection.
    public func close() async {
        let brokers = state.withLockedValue { state -> [ConnectorBroker] in
            state.closed = true
            return Array(state.brokers.values)
        }
        await watcher.close()
        await pool.close()
        for broker in brokers { await broker.close() }
    }

    // MARK: Per-broker access

    /// The pooled connections to one broker (created at first use).
    ///
    /// A pooled connection that drops marks the broker as failed at once (it is avoided like a broker whose request
    /// failed), so that requests stop going there before the trackers report it gone; one that connects clears the
    /// mark.
    ///
    /// - Throws: ``ZbusClientError/invalidAddress(_:reason:)`` when a tracker named a broker that is not `HOST:PORT`;
    ///   ``ZbusClientError/clientClosed(address:)`` after ``close()``.
    public func broker(for server: String) throws(ZbusClientError) -> any Broker {
        try pool(for: server)
    }

    private func pool(for server: String) throws(ZbusClientError) -> ConnectorBroker {
        let existing = state.withLockedValue { $0.closed ? nil : $0.brokers[server] }
        if let existing { return existing }
        let host = try BrokerAddress.parseSingle(server)
        let state = self.state
        let avoidFor = haConfiguration.avoidFailedServerFor.timeAmount
        let connector = ObservedConnector(
            inner: SocketConnector(host: host.host, port: host.port),
            onConnected: { state.withLockedValue { $0.local[server]?.avoidUntil = nil } },
            onLost: {
                state.withLockedValue { state in
                    guard !state.closed else { return }
                    state.local[server, default: ServerChoice.Local()].avoidUntil = .now() + avoidFor
                }
            })
        let created = state.withLockedValue { state -> ConnectorBroker? in
            if state.closed { return nil }
            if let existing = state.brokers[server] { return existing }
            let broker = ConnectorBroker(connector: connector, configuration: serverConfiguration, poolSize: haConfiguration.poolSize,
                                         eventLoopGroup: eventLoopGroup, logger: logger)
            state.brokers[server] = broker
            return broker
        }
        guard let created else { throw .clientClosed(address: address) }
        return created
    }

    /// A dedicated connection to `server`, for a consumer of that broker (its end marks nothing: consumers close
    /// their connections themselves).
    func makeClient(server: String) throws(ZbusClientError) -> MessageClient {
        let host = try BrokerAddress.parseSingle(server)
        if isClosed { throw .clientClosed(address: address) }
        return MessageClient(address: host, configuration: serverConfiguration, eventLoopGroup: eventLoopGroup, logger: logger)
    }

    /// The brokers to consume `mq` from: those hosting it, or every broker while none does (a consumer that comes
    /// first creates the MQ).
    func consumeServers(for mq: String, in topology: ClusterTopology) -> [String] {
        let hosting = topology.servers(hosting: mq)
        return hosting.isEmpty ? topology.serverAddresses : hosting
    }

    /// Whether ``close()`` was called.
    var isClosed: Bool { state.withLockedValue { $0.closed } }

    // MARK: Sending

    private nonisolated(nonsending) func sendToOne(_ request: Message, mq: String?, timeout: Duration?, preferConsumers: Bool,
                                                   retryAfterWrite: Bool) async throws -> Message {
        try await failover(mq: mq, preferConsumers: preferConsumers, retryAfterWrite: retryAfterWrite) { broker in
            let reply = try await broker.send(request, timeout: timeout)
            // An MQ-RPC call that found no consumer on this broker (its topology was stale) tries the next one.
            if !request.ack, request.cmd == "produce", reply.status == 404, reply.bodyString.hasPrefix("MQ(") {
                throw ServiceDownHere(reply: reply)
            }
            return reply
        }
    }

    /// Thrown inside a failover attempt: this broker answered that nobody serves the MQ here.
    private struct ServiceDownHere: Error {
        let reply: Message
    }

    /// Runs `attempt` on the best broker; on a connection failure (and, for `retryAfterWrite`, on a connection that
    /// broke or went silent after the request was written) tries the next best, until
    /// ``HaConfiguration/failoverTimeout`` passes. With no broker to try, waits for the topology to name one.
    private nonisolated(nonsending) func failover(mq: String?, preferConsumers: Bool, retryAfterWrite: Bool,
                                                  _ attempt: nonisolated(nonsending) (any Broker) async throws -> Message) async throws -> Message {
        let clock = ContinuousClock()
        let deadline = clock.now + haConfiguration.failoverTimeout
        var failed: Set<String> = []
        var lastError: (any Error)?
        var serviceDown: Message?
        var waits = 0
        var topology = await watcher.firstTopology(within: haConfiguration.firstTopologyTimeout)
        while true {
            if isClosed { throw ZbusClientError.clientClosed(address: address) }
            let now = NIODeadline.now()
            let server = state.withLockedValue { state -> String? in
                let candidates = ServerChoice.candidates(topology, mq: mq, preferConsumers: preferConsumers, excluding: failed,
                                                         local: state.local, now: now)
                guard let chosen = ServerChoice.leastLoaded(candidates, topology: topology, mq: mq, local: state.local,
                                                            turn: turn.increment())
                else { return nil }
                state.local[chosen, default: ServerChoice.Local()].inFlight += 1
                return chosen
            }
            guard let server else {
                if let serviceDown { return serviceDown }
                if clock.now >= deadline {
                    throw lastError ?? noBroker(mq: mq, reason: topology.isEmpty ? "no tracker has named a broker" : "no broker hosts it")
                }
                // Every broker failed this request, or none is known: wait a little for one to come back.
                let pause = min(haConfiguration.trackerBackoff.randomizedDelay(attempt: waits), deadline - clock.now)
                waits += 1
                try await Task.sleep(for: pause)
                failed.removeAll()
                topology = watcher.topology
                continue
            }
            let outcome: Result<Message, any Error>
            do {
                outcome = .success(try await attempt(try pool(for: server)))
            } catch {
                outcome = .failure(error)
            }
            state.withLockedValue { $0.local[server]?.inFlight -= 1 }
            switch outcome {
            case .success(let reply):
                return reply
            case .failure(let error as ServiceDownHere):
                serviceDown = error.reply
                failed.insert(server)
            case .failure(let error as ZbusClientError) where retryable(error, afterWrite: retryAfterWrite):
                let avoidUntil = NIODeadline.now() + haConfiguration.avoidFailedServerFor.timeAmount
                state.withLockedValue { $0.local[server, default: ServerChoice.Local()].avoidUntil = avoidUntil }
                logger.notice("broker failed; trying another", metadata: [
                    "server": "\(server)", "mq": "\(mq ?? "-")", "error": "\(error)",
                ])
                failed.insert(server)
                lastError = error
            case .failure(let error):
                throw error
            }
            topology = watcher.topology
        }
    }

    private func retryable(_ error: ZbusClientError, afterWrite: Bool) -> Bool {
        if isClosed { return false }
        switch error {
        case .connectFailed: return true
        case .connectionClosed, .timedOut: return afterWrite
        case .clientClosed: return true  // a per-broker pool closed under us; never written
        default: return false
        }
    }

    /// Sends `request` to every one of `servers` at once. Returns the first 200, else the first answer; throws only
    /// when no broker answered.
    private nonisolated(nonsending) func sendToEvery(_ request: Message, servers: [String], timeout: Duration?) async throws -> Message {
        guard !servers.isEmpty else {
            return try await sendToOne(request, mq: request.mq, timeout: timeout, preferConsumers: false, retryAfterWrite: true)
        }
        let results = await withTaskGroup(of: Result<Message, any Error>.self) { group in
            for server in servers {
                group.addTask {
                    // A broker that cannot be reached at once (its connect timeout is short, for failover) is tried
                    // twice more: an administrative command that misses one broker leaves the cluster uneven.
                    var failure: (any Error)?
                    for attempt in 0..<3 {
                        if attempt > 0 { try? await Task.sleep(for: .milliseconds(100 * attempt)) }
                        do {
                            return .success(try await self.broker(for: server).send(request, timeout: timeout))
                        } catch {
                            failure = error
                            guard Self.mayRetry(error) else { break }
                        }
                    }
                    return .failure(failure ?? ZbusClientError.clientClosed(address: server))
                }
            }
            var results: [Result<Message, any Error>] = []
            for await result in group { results.append(result) }
            return results
        }
        var firstAnswer: Message?
        var firstError: (any Error)?
        for result in results {
            switch result {
            case .success(let reply):
                if reply.status == 200 { return reply }
                if firstAnswer == nil { firstAnswer = reply }
            case .failure(let error):
                if firstError == nil { firstError = error }
            }
        }
        if let firstAnswer { return firstAnswer }
        throw firstError ?? noBroker(mq: request.mq, reason: "no broker answered")
    }

    /// Whether a command sent to every broker is tried again on a broker after `error`: only when it may not have
    /// reached the broker at all (it could not connect, or the connection dropped).
    private static func mayRetry(_ error: any Error) -> Bool {
        guard let error = error as? ZbusClientError else { return false }
        switch error {
        case .connectFailed, .connectionClosed: return true
        default: return false
        }
    }

    private func noBroker(mq: String?, reason: String) -> ZbusClientError {
        .noBroker(mq: mq, trackers: address, reason: reason)
    }
}

/// A registration of ``HaBroker/observeTopology(_:)``; ``cancel()`` ends it.
public struct TopologyObservation: Sendable {
    private let onCancel: @Sendable () -> Void

    init(onCancel: @escaping @Sendable () -> Void) { self.onCancel = onCancel }

    /// Stops the calls (one already running finishes).
    public func cancel() { onCancel() }
}

/// Opens each connection to a broker of the moment, picked at random: the connector behind
/// ``HaBroker/pooledClient()`` and ``HaBroker/makeClient(onPush:)``.
struct HaConnector: ClientConnector {
    let watcher: TopologyWatcher
    let address: String

    func connect(on eventLoop: any EventLoop, configuration: ClientConfiguration, onMessage: @escaping @Sendable (consuming Message) -> Void,
                 onClose: @escaping @Sendable (String?) -> Void) -> EventLoopFuture<any ClientLink> {
        let topology = watcher.topology
        let servers = topology.serverAddresses
        guard !servers.isEmpty else {
            return eventLoop.makeFailedFuture(ZbusClientError.noBroker(mq: nil, trackers: address, reason: "no tracker has named a broker yet"))
        }
        let server = servers.randomElement()!
        do {
            let host = try HostAndPort(parsing: server)
            return SocketConnector(host: host.host, port: host.port)
                .connect(on: eventLoop, configuration: configuration, onMessage: onMessage, onClose: onClose)
        } catch {
            return eventLoop.makeFailedFuture(ZbusClientError.invalidAddress(server, reason: error.description))
        }
    }
}
