import Atomics
import Logging
import NIOCore
import NIOPosix

/// One connection to a zbus node: requests matched to replies by `id`, pipelined, with heartbeat and reconnect.
///
/// ```swift
/// let client = try MessageClient(address: "127.0.0.1:15555")
/// var request = Message()
/// request.cmd = "test"
/// let reply = try await client.send(request)     // 200 OK
/// await client.close()
/// ```
///
/// - Every request gets an `id` (unless it has one) and the reply carrying that `id` completes it; any number of
///   requests may wait at once (pipelining), on one TCP connection or one in-process session.
/// - A message that matches no waiting request (a routed reply nobody waits for, a tracker push) goes to `onPush`.
/// - The client connects at the first request. If the connection drops, the requests waiting on it fail with
///   ``ZbusClientError/connectionClosed(address:cmd:id:reason:)`` (the caller decides whether to retry) and the client
///   reconnects with exponential backoff; requests sent meanwhile wait for the new connection up to
///   ``ClientConfiguration/connectTimeout``.
/// - Cancelling the task that awaits ``send(_:timeout:)`` abandons the request: its reply, if it comes, is dropped.
///
/// All methods may be called from any task or thread. Call ``close()`` when done.
public final class MessageClient: Sendable {
    /// The node this client talks to (`host:port`, or `in-process:NAME`).
    public let address: String
    /// The client's settings.
    public let configuration: ClientConfiguration
    /// The event loop the connection and the client's state live on.
    let eventLoop: any EventLoop

    private let core: NIOLoopBoundBox<Core>

    /// Creates a client for the node at `address` (`HOST:PORT`); nothing is connected until the first request.
    ///
    /// - Parameters:
    ///   - address: the node's address, for example `127.0.0.1:15555`.
    ///   - configuration: timeouts, heartbeat and reconnect settings.
    ///   - eventLoopGroup: where the connection runs; NIO's shared singleton group by default.
    ///   - logger: where connection events are logged.
    ///   - onPush: called with every message that answers no waiting request, on the client's event loop; it must not
    ///     block.
    /// - Throws: ``ZbusClientError/invalidAddress(_:reason:)`` when `address` is not `HOST:PORT`.
    public convenience init(
        address: String,
        configuration: ClientConfiguration = ClientConfiguration(),
        eventLoopGroup: (any EventLoopGroup)? = nil,
        logger: Logger = Logger(label: "zbus.client"),
        onPush: (@Sendable (Message) -> Void)? = nil
    ) throws(ZbusClientError) {
        let hostAndPort = try BrokerAddress.parseSingle(address)
        self.init(connector: SocketConnector(host: hostAndPort.host, port: hostAndPort.port), configuration: configuration,
                  eventLoopGroup: eventLoopGroup, logger: logger, onPush: onPush)
    }

    /// Creates a client whose connections come from `connector` (a transport other than TCP, such as an embedded
    /// node's in-process sessions); nothing is connected until the first request.
    ///
    /// - Parameters:
    ///   - connector: opens the connections.
    ///   - configuration: timeouts, heartbeat and reconnect settings.
    ///   - eventLoopGroup: where the client's state lives; NIO's shared singleton group by default.
    ///   - logger: where connection events are logged.
    ///   - onPush: called with every message that answers no waiting request, on the client's event loop.
    public init(connector: any ClientConnector, configuration: ClientConfiguration = ClientConfiguration(),
                eventLoopGroup: (any EventLoopGroup)? = nil, logger: Logger = Logger(label: "zbus.client"),
                onPush: (@Sendable (Message) -> Void)? = nil) {
        let eventLoop = (eventLoopGroup ?? MultiThreadedEventLoopGroup.singleton).next()
        var logger = logger
        logger[metadataKey: "broker"] = "\(connector.address)"
        self.address = connector.address
        self.configuration = configuration
        self.eventLoop = eventLoop
        let core = Core(connector: connector, configuration: configuration, eventLoop: eventLoop, logger: logger, onPush: onPush)
        self.core = NIOLoopBoundBox.makeBoxSendingValue(core, eventLoop: eventLoop)
    }

    /// An executor that runs tasks on this client's event loop, so that a task sending many requests in a row does
    /// not hop threads for each (see ``EventLoopTaskExecutor``).
    public var taskExecutor: EventLoopTaskExecutor { EventLoopTaskExecutor(eventLoop: eventLoop) }

    /// Whether a connection is open right now.
    public var isConnected: Bool {
        get async {
            (try? await eventLoop.submit { self.core.value.isConnected }.get()) ?? false
        }
    }

    /// Sends `request` and waits for the message that carries its `id`.
    ///
    /// The request keeps its `id` if it has one (a producer's id is what consumers see); otherwise one is generated.
    /// A `produce` with `ack: 0` gets no reply of its own, so this waits for a message routed back with the same id
    /// (MQ-RPC); use ``sendOneWay(_:)`` when nothing will come back.
    ///
    /// - Parameters:
    ///   - request: the message to send.
    ///   - timeout: how long to wait for the reply once written; ``ClientConfiguration/requestTimeout`` by default.
    /// - Returns: the reply, whatever its status (see ``Producer`` and ``MqAdmin`` for calls that check it).
    /// - Throws: ``ZbusClientError`` (`connectFailed`, `connectionClosed`, `timedOut`, `clientClosed`,
    ///   `duplicateRequestId`), or `CancellationError` when the task is cancelled (the request is abandoned).
    public nonisolated(nonsending) func send(_ request: Message, timeout: Duration? = nil) async throws -> Message {
        try await awaitReply(submit(request, timeout: timeout))
    }

    /// Waits for a submitted request's reply; cancellation abandons the request.
    nonisolated(nonsending) func awaitReply(_ reply: PendingReply) async throws -> Message {
        try await reply.wait(onCancel: .withdraw(from: self))
    }

    /// Forgets `reply`'s request (its task was cancelled), so that a late reply is dropped.
    func withdraw(_ reply: PendingReply) {
        let core = self.core
        eventLoop.execute { core.value.withdraw(reply) }
    }

    /// Sends `message`, which gets no reply (`heartbeat`, `route`, `produce` with `ack: 0`), and returns once it is
    /// written to the connection.
    ///
    /// - Throws: ``ZbusClientError/connectFailed(address:reason:)`` or ``ZbusClientError/clientClosed(address:)``
    ///   when it could not be written; `CancellationError` when the task is cancelled before it was.
    public nonisolated(nonsending) func sendOneWay(_ message: Message) async throws {
        var message = message
        if message.id == nil { message.id = makeId() }
        let written = PendingReply(id: message.id!, cmd: message.cmd, oneWay: true)
        let core = self.core
        let outgoing = message
        eventLoop.execute { core.value.submit(outgoing, reply: written, timeout: nil) }
        _ = try await written.wait(onCancel: .abandon)
    }

    /// Submits `request` and returns its pending reply without waiting (for callers that manage the wait themselves,
    /// such as a consumer's long-poll).
    func submit(_ request: Message, timeout: Duration?) -> PendingReply {
        guard let id = request.id else {
            var identified = request
            identified.id = makeId()
            return submit(identified, id: identified.id!, timeout: timeout)
        }
        // A request that has its id is written from the caller's own value: no copy of the message on the way.
        return submit(request, id: id, timeout: timeout)
    }

    private func submit(_ request: Message, id: String, timeout: Duration?) -> PendingReply {
        let reply = PendingReply(id: id, cmd: request.cmd)
        let core = self.core
        let timeout = timeout ?? configuration.requestTimeout
        if eventLoop.inEventLoop {
            // A task running on the client's loop (see `taskExecutor`) writes at once.
            core.value.submit(request, reply: reply, timeout: timeout)
        } else {
            let outgoing = request
            eventLoop.execute { core.value.submit(outgoing, reply: reply, timeout: timeout) }
        }
        return reply
    }

    /// Closes the current connection (the node releases what it held for it, for example a parked consume) and lets
    /// the client reconnect; requests waiting on it fail with `connectionClosed`.
    func dropConnection() {
        let core = self.core
        eventLoop.execute { core.value.dropConnection() }
    }

    /// Closes the connection and the client: waiting requests fail with ``ZbusClientError/clientClosed(address:)``,
    /// no reconnect is attempted. Safe to call more than once.
    public func close() async {
        let core = self.core
        let closed = eventLoop.flatSubmit { core.value.close() }
        try? await closed.get()
    }

    /// A new request id: a random per-process prefix and a counter, unique among this process's requests and very
    /// unlikely to meet another process's.
    public func makeId() -> String {
        RequestId.next()
    }
}

// MARK: - Connection state (event loop only)

extension MessageClient {
    /// The client's state, confined to its event loop.
    final class Core {
        private enum LinkState {
            case idle
            case connecting
            case connected(any ClientLink)
            case waitingToReconnect(Scheduled<Void>)
            case closed
        }

        private struct Waiting {
            let reply: PendingReply
            let deadline: NIODeadline
            let timeout: Duration
        }

        private struct Queued {
            let message: Message
            let reply: PendingReply
            let timeout: Duration?
            let connectDeadline: NIODeadline
        }

        private let connector: any ClientConnector
        private let configuration: ClientConfiguration
        private let eventLoop: any EventLoop
        private let logger: Logger
        private let onPush: (@Sendable (Message) -> Void)?
        /// ``ClientConfiguration/requestTimeout`` as a `TimeAmount`.
        private let requestTimeoutAmount: TimeAmount

        // Unchecked exclusivity: the core lives on its event loop, and no access to these spans a call that could
        // come back into the core (replies are completed, and pushes handed out, after the lookups that found them),
        // so the runtime's check of each access, several per request, is pure cost.
        @exclusivity(unchecked) private var state = LinkState.idle
        @exclusivity(unchecked) private var generation: UInt64 = 0
        @exclusivity(unchecked) private var waiting: [String: Waiting] = [:]
        @exclusivity(unchecked) private var queued: [Queued] = []
        @exclusivity(unchecked) private var flushScheduled = false
        // Whether anything was written since the last heartbeat tick (a flag rather than a time: no clock reading per write).
        @exclusivity(unchecked) private var wroteSinceBeat = false
        @exclusivity(unchecked) private var heartbeat: RepeatedTask?
        @exclusivity(unchecked) private var sweeper: RepeatedTask?
        @exclusivity(unchecked) private var reconnectDelay: Duration
        @exclusivity(unchecked) private var everConnected = false
        @exclusivity(unchecked) private var lastConnectError: String?
        @exclusivity(unchecked) private var closeFuture: EventLoopFuture<Void>?

        init(connector: any ClientConnector, configuration: ClientConfiguration, eventLoop: any EventLoop, logger: Logger,
             onPush: (@Sendable (Message) -> Void)?) {
            self.connector = connector
            self.configuration = configuration
            self.eventLoop = eventLoop
            self.logger = logger
            self.onPush = onPush
            self.requestTimeoutAmount = configuration.requestTimeout.timeAmount
            self.reconnectDelay = configuration.initialReconnectDelay
        }

        var isConnected: Bool {
            if case .connected = state { return true }
            return false
        }

        /// A sendable handle on this core for callbacks that run on its event loop.
        private var bound: NIOLoopBound<Core> { NIOLoopBound(self, eventLoop: eventLoop) }

        // MARK: Requests

        func submit(_ message: Message, reply: PendingReply, timeout: Duration?) {
            guard !reply.isCompleted else { return }  // cancelled before it left
            switch state {
            case .closed:
                reply.complete(.failure(ZbusClientError.clientClosed(address: connector.address)))
            case .connected(let link):
                write(message, reply: reply, timeout: timeout, on: link)
            case .idle:
                enqueue(message, reply: reply, timeout: timeout)
                connect()
            case .connecting, .waitingToReconnect:
                enqueue(message, reply: reply, timeout: timeout)
            }
        }

        func withdraw(_ reply: PendingReply) {
            if let entry = waiting[reply.id], entry.reply === reply { waiting.removeValue(forKey: reply.id) }
            queued.removeAll { $0.reply === reply }
        }

        private func enqueue(_ message: Message, reply: PendingReply, timeout: Duration?) {
            let deadline = NIODeadline.now() + configuration.connectTimeout.timeAmount
            queued.append(Queued(message: message, reply: reply, timeout: timeout, connectDeadline: deadline))
            startSweeper()
        }

        private func write(_ message: Message, reply: PendingReply, timeout: Duration?, on link: any ClientLink) {
            if reply.oneWay {
                link.write(message)
                scheduleFlush(link)
                reply.complete(.success(message))
                return
            }
            let timeout = timeout ?? configuration.requestTimeout
            // The usual timeout is converted once (turning a `Duration` into a `TimeAmount` divides).
            let amount = timeout == configuration.requestTimeout ? requestTimeoutAmount : timeout.timeAmount
            // One hash of the id for the check and the insertion; a duplicate puts the earlier request back.
            if let earlier = waiting.updateValue(Waiting(reply: reply, deadline: .now() + amount, timeout: timeout), forKey: reply.id) {
                waiting[reply.id] = earlier
                reply.complete(.failure(ZbusClientError.duplicateRequestId(reply.id)))
                return
            }
            link.write(message)
            scheduleFlush(link)
            startSweeper()
        }

        /// Flushes once after every write queued on the loop so far, so pipelined requests leave in one syscall.
        private func scheduleFlush(_ link: any ClientLink) {
            wroteSinceBeat = true
            guard !flushScheduled else { return }
            flushScheduled = true
            eventLoop.assumeIsolated().execute {
                self.flushScheduled = false
                if case .connected(let current) = self.state { current.flush() }
            }
        }

        func received(_ message: consuming Message, generation: UInt64) {
            guard generation == self.generation else { return }
            if let id = message.id, let entry = waiting.removeValue(forKey: id) {
                entry.reply.complete(.success(consume message))
            } else if let onPush {
                onPush(message)
            } else {
                logger.debug("message matching no request dropped", metadata: ["id": "\(message.id ?? "-")", "cmd": "\(message.cmd ?? "-")"])
            }
        }

        // MARK: Connection

        private func connect() {
            generation &+= 1
            let generation = self.generation
            state = .connecting
            let bound = self.bound
            let onMessage: @Sendable (consuming Message) -> Void = { message in
                bound.value.received(message, generation: generation)
            }
            let onClose: @Sendable (String?) -> Void = { reason in
                bound.value.linkClosed(generation: generation, reason: reason)
            }
            connector.connect(on: eventLoop, configuration: configuration, onMessage: onMessage, onClose: onClose)
                .hop(to: eventLoop)
                .assumeIsolated()
                .whenComplete { result in
                    self.connectCompleted(result, generation: generation)
                }
        }

        private func connectCompleted(_ result: Result<any ClientLink, any Error>, generation: UInt64) {
            guard generation == self.generation, case .connecting = state else {
                if case .success(let link) = result { _ = link.close() }
                return
            }
            switch result {
            case .success(let link):
                state = .connected(link)
                if everConnected { logger.info("reconnected") } else { logger.debug("connected") }
                everConnected = true
                reconnectDelay = configuration.initialReconnectDelay
                lastConnectError = nil
                let backlog = queued
                queued.removeAll()
                for entry in backlog where !entry.reply.isCompleted {
                    write(entry.message, reply: entry.reply, timeout: entry.timeout, on: link)
                }
                startHeartbeat()
            case .failure(let error):
                lastConnectError = "\(error)"
                logger.debug("connect failed", metadata: ["error": "\(error)", "retryIn": "\(reconnectDelay)"])
                expireQueued(now: .now())
                if queued.isEmpty && !(everConnected && configuration.reconnectEagerly) {
                    state = .idle
                } else {
                    scheduleReconnect()
                }
            }
        }

        private func scheduleReconnect() {
            let delay = reconnectDelay
            let doubled = reconnectDelay * 2
            reconnectDelay = doubled > configuration.maximumReconnectDelay ? configuration.maximumReconnectDelay : doubled
            let task = eventLoop.assumeIsolated().scheduleTask(in: delay.timeAmount) {
                self.reconnectDue()
            }
            state = .waitingToReconnect(task)
        }

        private func reconnectDue() {
            guard case .waitingToReconnect = state else { return }
            connect()
        }

        private func linkClosed(generation: UInt64, reason: String?) {
            guard generation == self.generation else { return }
            switch state {
            case .connected, .connecting:
                break
            case .idle, .waitingToReconnect, .closed:
                return
            }
            stopHeartbeat()
            logger.notice("connection lost", metadata: ["reason": "\(reason ?? "-")", "failedRequests": "\(waiting.count)"])
            failWaiting { reply in
                ZbusClientError.connectionClosed(address: self.connector.address, cmd: reply.cmd, id: reply.id, reason: reason)
            }
            self.generation &+= 1
            if configuration.reconnectEagerly || !queued.isEmpty {
                scheduleReconnect()
            } else {
                state = .idle
            }
        }

        func dropConnection() {
            guard case .connected(let link) = state else { return }
            _ = link.close()
        }

        func close() -> EventLoopFuture<Void> {
            if let closeFuture { return closeFuture }
            let previous = state
            state = .closed
            generation &+= 1
            stopHeartbeat()
            sweeper?.cancel()
            sweeper = nil
            let error = ZbusClientError.clientClosed(address: connector.address)
            failWaiting { _ in error }
            for entry in queued { entry.reply.complete(.failure(error)) }
            queued.removeAll()
            let future: EventLoopFuture<Void>
            switch previous {
            case .connected(let link):
                future = link.close()
            case .waitingToReconnect(let task):
                task.cancel()
                future = eventLoop.makeSucceededVoidFuture()
            default:
                future = eventLoop.makeSucceededVoidFuture()
            }
            closeFuture = future
            return future
        }

        private func failWaiting(_ error: (PendingReply) -> any Error) {
            let entries = waiting
            waiting.removeAll()
            for (_, entry) in entries { entry.reply.complete(.failure(error(entry.reply))) }
        }

        // MARK: Timers

        /// Checks deadlines every 100 ms while anything waits: replies past their timeout, queued requests past the
        /// connect timeout. One timer per client instead of one per request keeps the hot path free of scheduling.
        private func startSweeper() {
            guard sweeper == nil else { return }
            let bound = self.bound
            sweeper = eventLoop.scheduleRepeatedTask(initialDelay: .milliseconds(100), delay: .milliseconds(100)) { _ in
                bound.value.sweep()
            }
        }

        private func sweep() {
            let now = NIODeadline.now()
            if !waiting.isEmpty {
                var expired: [Waiting] = []
                for (id, entry) in waiting where entry.deadline <= now || entry.reply.isCompleted {
                    waiting.removeValue(forKey: id)
                    expired.append(entry)
                }
                for entry in expired {
                    entry.reply.complete(.failure(ZbusClientError.timedOut(
                        address: connector.address, cmd: entry.reply.cmd, id: entry.reply.id, after: entry.timeout)))
                }
            }
            expireQueued(now: now)
            if waiting.isEmpty && queued.isEmpty {
                sweeper?.cancel()
                sweeper = nil
            }
        }

        private func expireQueued(now: NIODeadline) {
            guard !queued.isEmpty else { return }
            let reason = lastConnectError ?? "no connection within \(configuration.connectTimeout)"
            queued.removeAll { entry in
                if entry.reply.isCompleted { return true }
                guard entry.connectDeadline <= now else { return false }
                entry.reply.complete(.failure(ZbusClientError.connectFailed(address: connector.address, reason: reason)))
                return true
            }
        }

        private func startHeartbeat() {
            guard let interval = configuration.heartbeatInterval, heartbeat == nil else { return }
            let amount = interval.timeAmount
            let bound = self.bound
            heartbeat = eventLoop.scheduleRepeatedTask(initialDelay: amount, delay: amount) { _ in
                bound.value.beat()
            }
        }

        private func beat() {
            // A beat goes out when a whole interval passed without a write.
            guard case .connected(let link) = state else { return }
            guard !wroteSinceBeat else {
                wroteSinceBeat = false
                return
            }
            var beat = Message()
            beat.cmd = BuiltInCommands.heartbeat
            beat.id = "heartbeat"
            link.write(beat)
            scheduleFlush(link)
        }

        private func stopHeartbeat() {
            heartbeat?.cancel()
            heartbeat = nil
        }
    }
}

