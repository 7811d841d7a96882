import Logging
import NIOConcurrencyHelpers
import NIOCore

/// Subscribes to every tracker (`sub_all`) and keeps the merged topology current (see ``TopologyMerge`` for how views
/// are trusted).
///
/// One ``MessageClient`` per tracker, all on one event loop where the merge lives: the client's reconnect and backoff
/// carry the connections, and a connector that reports each new connection lets the watcher subscribe again on it.
/// Readers on any thread see the latest topology through a lock; observers are called on the watcher's loop.
final class TopologyWatcher: Sendable {
    let trackers: [HostAndPort]
    let eventLoop: any EventLoop
    private let configuration: ClientConfiguration
    private let ha: HaConfiguration
    private let logger: Logger
    private let onServerJoin: @Sendable (String) -> Void
    private let loopState: NIOLoopBoundBox<LoopState>
    private let shared: NIOLockedValueBox<Shared>

    private final class LoopState {
        var merge: TopologyMerge
        var clients: [String: MessageClient] = [:]
        var subscriptions: [String: Subscription] = [:]
        var recheck: Scheduled<Void>?
        var closed = false

        init(merge: TopologyMerge) { self.merge = merge }
    }

    private struct Subscription {
        var inFlight = false
        var token: UInt64 = 0
        var attempt = 0
        var retry: Scheduled<Void>?
        var warnedNotATracker = false
        /// The tracker's last answer to `sub_all` was 403 (it has an `auth` section, and our token lacks `tracker`).
        var refused = false
    }

    private struct Observer {
        let onTopology: @Sendable (ClusterTopology) -> Void
        let onClose: (@Sendable () -> Void)?
    }

    private struct Shared {
        var topology = ClusterTopology()
        var version: UInt64 = 0
        var observers: [UInt64: Observer] = [:]
        var closed = false
        var nextObserver: UInt64 = 0
    }

    init(trackers: [HostAndPort], configuration: ClientConfiguration, ha: HaConfiguration, eventLoop: any EventLoop,
         logger: Logger, onServerJoin: @escaping @Sendable (String) -> Void) {
        self.trackers = trackers
        self.eventLoop = eventLoop
        var configuration = configuration
        // A subscription must come back after every drop, whatever the broker's connections do.
        configuration.reconnectEagerly = true
        // A subscriber that sends nothing is closed by the tracker node as idle after `idle_timeout`.
        configuration.heartbeatInterval = configuration.heartbeatInterval ?? .seconds(60)
        configuration.connectTimeout = min(configuration.connectTimeout, ha.serverConnectTimeout * 2)
        self.configuration = configuration
        self.ha = ha
        self.logger = logger
        self.onServerJoin = onServerJoin
        let merge = TopologyMerge(trackers: trackers.map(\.description), settle: ha.settle.timeAmount)
        self.shared = NIOLockedValueBox(Shared())
        self.loopState = NIOLoopBoundBox.makeBoxSendingValue(LoopState(merge: merge), eventLoop: eventLoop)
    }

    /// The merged topology now.
    var topology: ClusterTopology { shared.withLockedValue { $0.topology } }

    /// Opens the subscriptions.
    func start() {
        eventLoop.execute {
            let state = self.loopState.value
            guard !state.closed, state.clients.isEmpty else { return }
            for tracker in self.trackers {
                let name = tracker.description
                let connector = ObservedConnector(
                    inner: SocketConnector(host: tracker.host, port: tracker.port),
                    onConnected: { [weak self] in self?.connected(name) },
                    onLost: { [weak self] in self?.lost(name) })
                var logger = self.logger
                logger[metadataKey: "tracker"] = "\(name)"
                let client = MessageClient(connector: connector, configuration: self.configuration, eventLoopGroup: self.eventLoop,
                                           logger: logger, onPush: { [weak self] message in self?.pushed(message, from: name) })
                state.clients[name] = client
                state.subscriptions[name] = Subscription()
                self.subscribe(name)
            }
        }
    }

    /// Closes the subscriptions; observers are told nothing more.
    func close() async {
        let clients: [MessageClient] = (try? await eventLoop.submit { () -> [MessageClient] in
            let state = self.loopState.value
            state.closed = true
            state.recheck?.cancel()
            for (name, subscription) in state.subscriptions {
                subscription.retry?.cancel()
                state.subscriptions[name]?.retry = nil
            }
            return Array(state.clients.values)
        }.get()) ?? []
        for client in clients { await client.close() }
        let observers = shared.withLockedValue { shared -> [Observer] in
            shared.closed = true
            defer { shared.observers.removeAll() }
            return Array(shared.observers.values)
        }
        for observer in observers { observer.onClose?() }
    }

    // MARK: Observing

    /// Calls `observer` with the current topology and every new one, on the watcher's loop, until the returned token
    /// is passed to ``removeObserver(_:)``.
    @discardableResult
    func addObserver(_ observer: @escaping @Sendable (ClusterTopology) -> Void, onClose: (@Sendable () -> Void)? = nil) -> UInt64 {
        let (token, current, closed) = shared.withLockedValue { shared -> (UInt64, ClusterTopology, Bool) in
            shared.nextObserver += 1
            if !shared.closed { shared.observers[shared.nextObserver] = Observer(onTopology: observer, onClose: onClose) }
            return (shared.nextObserver, shared.topology, shared.closed)
        }
        eventLoop.execute {
            observer(current)
            if closed { onClose?() }
        }
        return token
    }

    /// Stops calling an observer; returns whether it was still registered.
    @discardableResult
    func removeObserver(_ token: UInt64) -> Bool {
        shared.withLockedValue { $0.observers.removeValue(forKey: token) != nil }
    }

    /// Every new topology, starting with the current one, until the consuming task stops iterating.
    func updates() -> AsyncStream<ClusterTopology> {
        let (stream, continuation) = AsyncStream.makeStream(of: ClusterTopology.self, bufferingPolicy: .bufferingNewest(1))
        let token = addObserver({ continuation.yield($0) }, onClose: { continuation.finish() })
        continuation.onTermination = { [weak self] _ in self?.removeObserver(token) }
        return stream
    }

    /// The topology once it names at least one broker, or whatever it is after `timeout`.
    func firstTopology(within timeout: Duration) async -> ClusterTopology {
        let current = topology
        if !current.isEmpty { return current }
        let box = NIOLockedValueBox<UInt64?>(nil)
        return await withCheckedContinuation { (continuation: CheckedContinuation<ClusterTopology, Never>) in
            let resumed = NIOLockedValueBox(false)
            let resumeOnce: @Sendable (ClusterTopology) -> Void = { topology in
                let first = resumed.withLockedValue { done -> Bool in
                    defer { done = true }
                    return !done
                }
                if first { continuation.resume(returning: topology) }
            }
            let token = addObserver { topology in
                guard !topology.isEmpty else { return }
                if let token = box.withLockedValue({ $0 }) { self.removeObserver(token) }
                resumeOnce(topology)
            }
            box.withLockedValue { $0 = token }
            eventLoop.scheduleTask(in: timeout.timeAmount) {
                self.removeObserver(token)
                resumeOnce(self.topology)
            }
        }
    }

    // MARK: Subscriptions (event loop only)

    private func subscribe(_ tracker: String) {
        let state = loopState.value
        guard !state.closed, let client = state.clients[tracker], var subscription = state.subscriptions[tracker],
            !subscription.inFlight
        else { return }
        subscription.inFlight = true
        subscription.token &+= 1
        subscription.retry = nil
        let token = subscription.token
        state.subscriptions[tracker] = subscription
        state.merge.subscribing(tracker)
        var request = Message()
        request.cmd = "sub_all"
        if let token = ha.trackerToken { request.token = token }
        client.send(request, timeout: ha.subscribeTimeout) { [weak self] result in
            self?.subscribed(tracker, token: token, result: result)
        }
    }

    private func subscribed(_ tracker: String, token: UInt64, result: Result<Message, any Error>) {
        let state = loopState.value
        guard !state.closed, var subscription = state.subscriptions[tracker], subscription.token == token else { return }
        subscription.inFlight = false
        switch result {
        case .success(let answer):
            guard answer.cmd == "pub_all", let event = TrackerEvent(answer) else {
                if answer.status == 403 {
                    // A tracker under `auth`: retrying helps only once its tokens (or ours) change, so the first
                    // refusal says which setting it is, at error, and the retries after it only at debug.
                    let metadata: Logger.Metadata = [
                        "tracker": "\(tracker)", "sent_token": "\(ha.trackerToken != nil)", "answer": "\(answer.bodyString.prefix(200))",
                    ]
                    if subscription.refused {
                        logger.debug("the tracker still refuses sub_all; retrying", metadata: metadata)
                    } else {
                        logger.error("the tracker refuses sub_all: set HaConfiguration.trackerToken to a token with the tracker permission; retrying", metadata: metadata)
                        subscription.refused = true
                    }
                } else if !subscription.warnedNotATracker {
                    logger.warning("the address answers sub_all with something else than pub_all: is it a tracker?", metadata: [
                        "tracker": "\(tracker)", "status": "\(answer.status ?? 0)", "answer": "\(answer.bodyString.prefix(200))",
                    ])
                    subscription.warnedNotATracker = true
                }
                state.subscriptions[tracker] = subscription
                state.merge.disconnected(tracker)
                publish()
                scheduleRetry(tracker)
                return
            }
            subscription.attempt = 0
            if subscription.refused {
                logger.notice("the tracker accepts sub_all again", metadata: ["tracker": "\(tracker)"])
                subscription.refused = false
            }
            state.subscriptions[tracker] = subscription
            state.merge.apply(event, from: tracker, now: .now())
            logger.debug("subscribed to tracker", metadata: ["tracker": "\(tracker)"])
            publish()
        case .failure(let error):
            state.subscriptions[tracker] = subscription
            state.merge.disconnected(tracker)
            publish()
            switch error as? ZbusClientError {
            case .clientClosed?:
                return
            case .connectionClosed?:
                break  // the client reconnects by itself, and the new connection subscribes again
            case .timedOut?:
                logger.notice("tracker did not answer sub_all; reconnecting", metadata: ["tracker": "\(tracker)"])
                state.clients[tracker]?.dropConnection()
            default:
                logger.debug("tracker unreachable; retrying", metadata: ["tracker": "\(tracker)", "error": "\(error)"])
                scheduleRetry(tracker)
            }
        }
    }

    private func scheduleRetry(_ tracker: String) {
        let state = loopState.value
        guard !state.closed, var subscription = state.subscriptions[tracker], subscription.retry == nil else { return }
        let delay = ha.trackerBackoff.randomizedDelay(attempt: subscription.attempt)
        subscription.attempt += 1
        subscription.retry = eventLoop.assumeIsolated().scheduleTask(in: delay.timeAmount) { [weak self] in
            guard let self else { return }
            self.loopState.value.subscriptions[tracker]?.retry = nil
            self.subscribe(tracker)
        }
        state.subscriptions[tracker] = subscription
    }

    private func connected(_ tracker: String) {
        eventLoop.assertInEventLoop()
        // A new connection (a reconnect, or the first one a subscription caused): subscribe on it unless the
        // subscription that caused it is still waiting for its answer.
        subscribe(tracker)
    }

    private func lost(_ tracker: String) {
        eventLoop.assertInEventLoop()
        let state = loopState.value
        guard !state.closed else { return }
        logger.debug("tracker connection lost", metadata: ["tracker": "\(tracker)"])
        state.merge.disconnected(tracker)
        publish()
    }

    private func pushed(_ message: Message, from tracker: String) {
        let state = loopState.value
        guard !state.closed, let event = TrackerEvent(message) else { return }
        state.merge.apply(event, from: tracker, now: .now())
        if case .serverJoin(let server) = event { onServerJoin(server) }
        publish()
    }

    /// Recomputes the merged topology and tells the observers if it changed.
    private func publish() {
        let state = loopState.value
        let now = NIODeadline.now()
        let topology = state.merge.merged(now: now)
        let observers = shared.withLockedValue { shared -> [@Sendable (ClusterTopology) -> Void]? in
            guard shared.topology != topology else { return nil }
            shared.topology = topology
            shared.version &+= 1
            return shared.observers.values.map(\.onTopology)
        }
        if let observers {
            logger.debug("topology changed", metadata: ["topology": "\(topology)"])
            for observer in observers { observer(topology) }
        }
        state.recheck?.cancel()
        state.recheck = nil
        if let next = state.merge.nextChange(after: now) {
            state.recheck = eventLoop.assumeIsolated().scheduleTask(deadline: next) { [weak self] in self?.publish() }
        }
    }
}

/// A connector that reports each connection it opens and each one that closes, on the client's event loop (before
/// the client itself handles it).
struct ObservedConnector: ClientConnector {
    let inner: any ClientConnector
    let onConnected: @Sendable () -> Void
    let onLost: @Sendable () -> Void

    var address: String { inner.address }

    func connect(on eventLoop: any EventLoop, configuration: ClientConfiguration, onMessage: @escaping @Sendable (consuming Message) -> Void,
                 onClose: @escaping @Sendable (String?) -> Void) -> EventLoopFuture<any ClientLink> {
        let onLost = self.onLost
        let onConnected = self.onConnected
        return inner.connect(on: eventLoop, configuration: configuration, onMessage: onMessage, onClose: { reason in
            onClose(reason)
            onLost()
        }).map { link in
            onConnected()
            return link
        }
    }
}
