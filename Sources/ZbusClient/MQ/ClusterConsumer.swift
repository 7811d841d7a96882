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
        /// Messages that arrived from several brokers at once; handed out by the next takes.
        var stash: [Message] = []
        /// The connections of running `start` loops, closed with the consumer.
        var loops: [ConsumerConnection] = []
        var closed = false
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

    /// Takes the next message from whichever broker has one first.
    nonisolated(nonsending) func take(timeout: Duration) async throws -> Message? {
        if let stashed = state.withLockedValue({ $0.stash.isEmpty ? nil : $0.stash.removeFirst() }) { return stashed }
        let topology = await broker.watcher.firstTopology(within: broker.haConfiguration.firstTopologyTimeout)
        let servers = broker.consumeServers(for: mq, in: topology)
        guard !servers.isEmpty else {
            throw ZbusClientError.noBroker(mq: mq, trackers: broker.address, reason: "no tracker has named a broker yet")
        }
        var connections: [(String, ConsumerConnection)] = []
        for server in servers { connections.append((server, try taker(for: server))) }
        if connections.count == 1 {
            let (server, connection) = connections[0]
            return try await connection.take(timeout: timeout).map { Self.stamped($0, server: server) }
        }
        // Every broker is asked at once; the first message ends the others' waits. A take that is cancelled keeps its
        // consume outstanding for the next take, and a message that arrived anyway is kept for the next take.
        let (messages, errors) = await withTaskGroup(of: (String, Result<Message?, any Error>).self) { group in
            for (server, connection) in connections {
                group.addTask {
                    do { return (server, .success(try await connection.take(timeout: timeout))) } catch { return (server, .failure(error)) }
                }
            }
            var messages: [Message] = []
            var errors: [any Error] = []
            while let (server, result) = await group.next() {
                switch result {
                case .success(let message?):
                    messages.append(Self.stamped(message, server: server))
                    group.cancelAll()
                case .success(nil):
                    break
                case .failure(let error):
                    if !(error is CancellationError) { errors.append(error) }
                }
            }
            return (messages, errors)
        }
        if let first = messages.first {
            if messages.count > 1 { state.withLockedValue { $0.stash.append(contentsOf: messages.dropFirst()) } }
            return first
        }
        try Task.checkCancellation()
        if errors.count == connections.count, let error = errors.first { throw error }
        for error in errors {
            logger.debug("a broker of the cluster failed a consume", metadata: ["error": "\(error)"])
        }
        return nil
    }

    /// Runs `concurrency` consume loops on every broker hosting the MQ, adding loops for brokers as they appear,
    /// until the task is cancelled, the consumer is closed, or a broker refuses this consumer (400, 403).
    func start(concurrency: Int, consumer: Consumer, handler: @escaping @Sendable (Message, Consumer) async throws -> Void) async throws {
        enum Event: Sendable {
            case topology(ClusterTopology)
            case failed(any Error)
        }
        let (events, continuation) = AsyncStream.makeStream(of: Event.self)
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
                        state.withLockedValue { $0.loops.append(connection) }
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

    /// Acknowledges what each connection holds and closes them all.
    func close() async {
        let connections = state.withLockedValue { state -> [ConsumerConnection] in
            state.closed = true
            defer { state.takers.removeAll() }
            return Array(state.takers.values)
        }
        for connection in connections { await connection.close() }
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
