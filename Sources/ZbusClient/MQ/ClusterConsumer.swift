import Logging
import NIOConcurrencyHelpers
import NIOCore

/// A ``Consumer`` of an MQ in a cluster: one connection per broker hosting the MQ, so that messages stored on any
/// broker are consumed, and brokers that start hosting the MQ later are consumed from as soon as a tracker says so.
///
/// Each connection keeps the single-node rules: a message is acknowledged when the same connection consumes again,
/// so a message taken from one broker stays in flight there until the next take.
final class ClusterConsumer: Sendable {
    let broker: HaBroker
    let mq: String
    let options: Consumer.Options
    private let logger: Logger
    private let state = NIOLockedValueBox(State())

    private struct State {
        /// The connections `take` uses, by broker.
        var takers: [String: ConsumerConnection] = [:]
        /// The broker that delivered the last message `take` returned: asked first next time.
        var lastDelivering: String?
        /// Brokers whose consume failed, asked last until then.
        var failedUntil: [String: ContinuousClock.Instant] = [:]
        /// The connections of running `start` loops, closed with the consumer.
        var loops: [ConsumerConnection] = []
        /// A connection of the `start` loops per broker (a routed answer leaves on a connection that consumed there).
        var loopByServer: [String: ConsumerConnection] = [:]
        /// The event streams of running `start` calls, finished with the consumer so that they return.
        var starts: [AsyncStream<StartEvent>.Continuation] = []
        var closed = false
    }

    /// What drives a `start` call: a new topology, or a loop that failed for good.
    private enum StartEvent: Sendable {
        case topology(ClusterTopology)
        case failed(any Error)
    }

    init(broker: HaBroker, mq: String, options: Consumer.Options, logger: Logger) {
        self.broker = broker
        self.mq = mq
        var options = options
        // A broker that is down is retried with a growing pause rather than every 200 ms, up to the pause within
        // which a restarted broker is consumed from again.
        if options.retryBackoff.multiplier == 1 {
            options.retryBackoff = Backoff(initial: options.retryBackoff.initial, maximum: .seconds(2), jitter: 0.2)
        }
        self.options = options
        self.logger = logger
    }

    /// How long one broker is asked at a time by ``take(timeout:)`` while others may have messages.
    static let pollSlice: Duration = .milliseconds(200)
    /// How long a broker whose consume failed is asked last.
    static let failedPause: Duration = .seconds(2)

    /// Takes the next message from any broker hosting the MQ: the brokers are asked in turn, each for at most
    /// ``pollSlice`` (the whole wait when there is one broker), the one that delivered last first, brokers that just
    /// failed last.
    nonisolated(nonsending) func take(timeout: Duration) async throws -> Message? {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        var lastError: (any Error)?
        while true {
            let topology = await broker.watcher.firstTopology(within: broker.haConfiguration.firstTopologyTimeout)
            let servers = ordered(broker.consumeServers(for: mq, in: topology), now: clock.now)
            guard !servers.isEmpty else {
                throw ZbusClientError.noBroker(mq: mq, trackers: broker.address, reason: "no tracker has named a broker yet")
            }
            var failures = 0
            for server in servers {
                let remaining = deadline - clock.now
                let slice = servers.count == 1 ? max(.zero, remaining) : max(.zero, min(remaining, Self.pollSlice))
                do {
                    if let message = try await taker(for: server).take(timeout: slice) {
                        state.withLockedValue { $0.lastDelivering = server }
                        return Self.stamped(message, server: server)
                    }
                } catch let error as ZbusClientError where error.isConnectionFailure {
                    failures += 1
                    lastError = error
                    let until = clock.now + Self.failedPause
                    state.withLockedValue { $0.failedUntil[server] = until }
                    logger.debug("a broker of the cluster failed a consume", metadata: ["server": "\(server)", "error": "\(error)"])
                }
                if clock.now >= deadline { break }
            }
            if clock.now >= deadline {
                if failures == servers.count, let lastError { throw lastError }
                return nil
            }
            if failures == servers.count {
                // Every broker is down: wait a little rather than spin on refused connections.
                try await Task.sleep(for: min(Self.pollSlice, deadline - clock.now))
            }
        }
    }

    /// `servers` with the one that delivered last first and those that failed recently last.
    private func ordered(_ servers: [String], now: ContinuousClock.Instant) -> [String] {
        let (last, failed) = state.withLockedValue { ($0.lastDelivering, $0.failedUntil) }
        let healthy = servers.filter { failed[$0].map { $0 <= now } ?? true }
        let unhealthy = servers.filter { !healthy.contains($0) }
        var result = healthy
        if let last, let index = result.firstIndex(of: last) { result.insert(result.remove(at: index), at: 0) }
        return result + unhealthy
    }

    /// Runs `concurrency` consume loops on every broker hosting the MQ, adding loops for brokers as they appear,
    /// until the task is cancelled, the consumer is closed, or a broker refuses this consumer (400, 403).
    func start(concurrency: Int, consumer: Consumer, handler: @escaping @Sendable (Message, Consumer) async throws -> Void) async throws {
        let (events, continuation) = AsyncStream.makeStream(of: StartEvent.self)
        let closedAlready = state.withLockedValue { state -> Bool in
            if !state.closed { state.starts.append(continuation) }
            return state.closed
        }
        if closedAlready { return }
        let watcher = broker.watcher
        let token = watcher.addObserver({ continuation.yield(.topology($0)) }, onClose: { continuation.finish() })
        defer {
            watcher.removeObserver(token)
            continuation.finish()
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            var started: Set<String> = []
            for await event in events {
                let topology: ClusterTopology
                switch event {
                case .failed(let error):
                    group.cancelAll()
                    throw error
                case .topology(let current):
                    topology = current
                }
                if state.withLockedValue({ $0.closed }) { break }
                for server in broker.consumeServers(for: mq, in: topology) where !started.contains(server) {
                    started.insert(server)
                    logger.debug("consuming from a broker of the cluster", metadata: ["server": "\(server)"])
                    for _ in 0..<max(1, concurrency) {
                        let connection = ConsumerConnection(client: try broker.makeClient(server: server), mq: mq, options: options)
                        let added = state.withLockedValue { state -> Bool in
                            if !state.closed {
                                state.loops.append(connection)
                                if state.loopByServer[server] == nil { state.loopByServer[server] = connection }
                            }
                            return !state.closed
                        }
                        guard added else {
                            await connection.close()
                            break
                        }
                        group.addTask {
                            do {
                                try await consumer.consumeLoop(connection) { message, consumer in
                                    try await handler(Self.stamped(message, server: server), consumer)
                                }
                            } catch {
                                continuation.yield(.failed(error))
                            }
                            // Not cancelled with the loop: acknowledging the last handled message must still happen.
                            await Task { await connection.close() }.value
                        }
                    }
                }
            }
            group.cancelAll()
            try await group.waitForAll()
        }
    }

    /// Acknowledges what each connection holds and closes them all, those of `start` loops included (which makes
    /// `start` return).
    func close() async {
        let (connections, starts) = state.withLockedValue { state -> ([ConsumerConnection], [AsyncStream<StartEvent>.Continuation]) in
            state.closed = true
            defer {
                state.takers.removeAll()
                state.loops.removeAll()
                state.starts.removeAll()
            }
            return (Array(state.takers.values) + state.loops, state.starts)
        }
        for start in starts { start.finish() }
        for connection in connections { await connection.close() }
    }

    /// A connection that consumed from `server`, for routing an answer there: the node accepts a `route` only from a
    /// connection that consumed from an MQ the receiver produced to.
    func routeClient(server: String) -> MessageClient? {
        state.withLockedValue { ($0.takers[server] ?? $0.loopByServer[server])?.client }
    }

    private func taker(for server: String) throws -> ConsumerConnection {
        if let existing = state.withLockedValue({ $0.takers[server] }) { return existing }
        let connection = ConsumerConnection(client: try broker.makeClient(server: server), mq: mq, options: options)
        return try state.withLockedValue { state in
            if state.closed { throw ZbusClientError.clientClosed(address: broker.address) }
            if let existing = state.takers[server] { return existing }
            state.takers[server] = connection
            return connection
        }
    }

    /// The message with the broker it came from in `server`, where an answer to it must be routed.
    private static func stamped(_ message: consuming Message, server: String) -> Message {
        message.server = server
        return message
    }
}
