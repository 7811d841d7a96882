import Logging
import NIOConcurrencyHelpers
import NIOCore

/// Consumes messages from one MQ on its own connection.
///
/// ```swift
/// let consumer = Consumer(broker: broker, mq: "Orders")
/// if let message = try await consumer.take(timeout: .seconds(5)) { ... }   // nil: nothing came
///
/// try await consumer.start(concurrency: 4) { message, consumer in           // until the task is cancelled
///     try await consumer.route(Message(status: 200, text: "done"), to: message)   // answer an MQ-RPC caller
/// }
/// await consumer.close()
/// ```
///
/// - **Acknowledgement.** The node keeps a delivered message in flight until the same connection consumes again; so
///   the next ``take(timeout:)`` acknowledges the previous message, ``start(concurrency:handler:)`` acknowledges each
///   message once its handler returned, and ``close()`` acknowledges the last one. A consumer that dies without that
///   leaves the message to be delivered again (at-least-once).
/// - **Ids.** As the zbus 6 clients do, a delivered message has `id` = the producer's id (`rawid` is removed) and keeps
///   `sender`, so ``route(_:to:)`` can answer it.
/// - **Waiting.** `take(timeout:)` asks the node to wait at most `timeout` (`timeout` header) and the node answers 204
///   when nothing came, so no stale long-poll is ever left behind to swallow a message. If the task is cancelled while
///   a consume is in flight, that consume stays outstanding and its message goes to the next `take`.
/// - **Auto-create.** A consume on an MQ that does not exist creates it (``Options/autoCreate``) and retries; with
///   ``Options/token`` the MQ is created protected by that token (its `access_token`), and the `create_mq` presents
///   it (under the node's `auth` section it needs `admin` on the name).
/// - **Clusters.** On an ``HaBroker`` the consumer consumes from every broker hosting the MQ (and from brokers that
///   start hosting it later), so no message is stranded on one broker; each delivered message carries the broker it
///   came from in `server`, which is where ``route(_:to:)`` sends the answer.
public final class Consumer: Sendable {
    /// How a consumer consumes.
    public struct Options: Sendable {
        /// The MQ's access token, if it has one.
        public var token: String?
        /// For a pub/sub MQ: the topics to subscribe to (`a,b`, or `*` for all).
        public var topic: String?
        /// The mode to create the MQ with when it does not exist; `nil` makes a missing MQ an error (404).
        public var autoCreate: QueueMode?
        /// How long each consume of ``Consumer/start(concurrency:handler:)`` asks the node to wait.
        public var pollTimeout: Duration
        /// How much longer than the node's wait limit the client waits for an answer before it gives the connection
        /// up as silent (and replaces it, so that the node redelivers anything it handed to the dead poll).
        public var replyGrace: Duration
        /// The pauses after failed consumes in ``Consumer/start(concurrency:handler:)`` before consuming again
        /// (counted afresh after each consume that succeeds).
        public var retryBackoff: Backoff
        /// The pause after a failed consume: sets a constant ``retryBackoff``; reads its first pause.
        public var retryDelay: Duration {
            get { retryBackoff.initial }
            set { retryBackoff = .constant(newValue) }
        }

        /// Creates options; by default a missing MQ is created as a plain queue, polls wait 10 s, and a failed consume
        /// is retried every `retryDelay` (200 ms) unless `retryBackoff` gives a growing schedule.
        public init(token: String? = nil, topic: String? = nil, autoCreate: QueueMode? = .mq, pollTimeout: Duration = .seconds(10),
                    replyGrace: Duration = .seconds(5), retryDelay: Duration = .milliseconds(200), retryBackoff: Backoff? = nil) {
            self.token = token
            self.topic = topic
            self.autoCreate = autoCreate
            self.pollTimeout = pollTimeout
            self.replyGrace = replyGrace
            self.retryBackoff = retryBackoff ?? .constant(retryDelay)
        }
    }

    /// Where the consumer's connections come from (and where routed replies go).
    public let broker: any Broker
    /// The MQ consumed.
    public let mq: String
    /// The consumer's settings.
    public let options: Options
    private let primary: ConsumerConnection
    /// For an ``HaBroker``: the connections to every broker hosting the MQ.
    private let cluster: ClusterConsumer?
    private let logger: Logger

    /// Creates a consumer of `mq`; its connection opens at the first consume.
    public init(broker: any Broker, mq: String, options: Options = Options(), logger: Logger = Logger(label: "zbus.consumer")) {
        self.broker = broker
        self.mq = mq
        self.options = options
        var logger = logger
        logger[metadataKey: "mq"] = "\(mq)"
        self.logger = logger
        self.primary = ConsumerConnection(client: broker.makeClient(onPush: nil), mq: mq, options: options)
        self.cluster = (broker as? HaBroker).map { ClusterConsumer(broker: $0, mq: mq, options: options, logger: logger) }
    }

    /// An executor that runs tasks on the event loop of this consumer's connection: a loop of ``take(timeout:)`` run
    /// there makes no thread hop per message (see ``EventLoopTaskExecutor``).
    public var taskExecutor: EventLoopTaskExecutor { primary.client.taskExecutor }

    /// Takes the next message, waiting at most `timeout` for one (the wait happens on the node).
    ///
    /// Calling `take` again acknowledges the message it returned before. Do not call it from two tasks at once on the
    /// same consumer (use ``start(concurrency:handler:)`` or one consumer per task).
    ///
    /// - Returns: the message (`id` = the producer's id), or `nil` when none came within `timeout`.
    /// - Throws: ``ZbusClientError/rejected(cmd:mq:status:body:)`` (403 token, 404 with auto-create off), a connection
    ///   error, or `CancellationError` (the consume in flight is kept for the next `take`).
    public nonisolated(nonsending) func take(timeout: Duration = .seconds(10)) async throws -> Message? {
        if let cluster { return try await cluster.take(timeout: timeout) }
        return try await primary.take(timeout: timeout)
    }

    /// Consumes with `concurrency` connections, calling `handler` for each message, until the task is cancelled or
    /// the consumer is closed.
    ///
    /// Each connection handles one message at a time and acknowledges it when `handler` returns (also when it throws:
    /// the error is logged). Connection failures and refusals that may pass (404 while the node restarts, 5xx) are
    /// logged and consuming resumes after a pause of ``Options/retryBackoff``.
    ///
    /// - Throws: ``ZbusClientError/rejected(cmd:mq:status:body:)`` when the node refuses to let this consumer consume
    ///   (400, 403: for example a wrong token); it returns normally when cancelled.
    public func start(concurrency: Int = 1, handler: @escaping @Sendable (Message, Consumer) async throws -> Void) async throws {
        if let cluster { return try await cluster.start(concurrency: concurrency, consumer: self, handler: handler) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<max(1, concurrency) {
                let connection = index == 0 ? primary : ConsumerConnection(client: broker.makeClient(onPush: nil), mq: mq, options: options)
                group.addTask {
                    let outcome: Result<Void, any Error>
                    do {
                        try await self.consumeLoop(connection, handler: handler)
                        outcome = .success(())
                    } catch {
                        outcome = .failure(error)
                    }
                    if index != 0 {
                        // Not cancelled with the loop: acknowledging the last handled message must still happen.
                        await Task { await connection.close() }.value
                    }
                    try outcome.get()
                }
            }
            try await group.waitForAll()
        }
    }

    func consumeLoop(_ connection: ConsumerConnection, handler: @Sendable (Message, Consumer) async throws -> Void) async throws {
        var failures = 0
        while !Task.isCancelled {
            let message: Message?
            do {
                message = try await connection.take(timeout: options.pollTimeout)
                failures = 0
            } catch is CancellationError {
                return
            } catch let error as ZbusClientError {
                switch error {
                case .clientClosed:
                    return
                case .rejected(_, _, let status, _) where status == 400 || status == 403:
                    throw error  // this consumer may not consume here: retrying cannot help
                default:
                    // The connection failed, or the node refused for now (a node shutting down answers parked
                    // consumes 404 and refuses to create MQs): try again once it is back.
                    let pause = options.retryBackoff.randomizedDelay(attempt: failures)
                    failures += 1
                    logger.notice("consume failed; retrying", metadata: ["error": "\(error)", "retryIn": "\(pause)"])
                    do { try await Task.sleep(for: pause) } catch { return }
                    continue
                }
            }
            guard let message else { continue }
            do {
                try await handler(message, self)
            } catch {
                logger.error("consumer handler failed; message acknowledged anyway", metadata: [
                    "id": "\(message.id ?? "-")", "error": "\(error)",
                ])
            }
        }
    }

    /// Routes `reply` back to whoever sent `request` (a message this consumer received): the node delivers it to
    /// that connection with `reply`'s status as the status line (zbus 6 `reply_code`) and `request`'s `id`, which is
    /// what an MQ-RPC caller waits for.
    ///
    /// - Throws: ``ZbusClientError/missingSender(id:)`` when `request` has no `sender`; a connection error.
    public func route(_ reply: consuming Message, to request: Message) async throws {
        guard let recver = request.sender else { throw ZbusClientError.missingSender(id: request.id) }
        var message = consume reply
        if let status = message.status {
            message.headers[HeaderName.replyCode] = String(status)
            message.startLine = .request(method: "POST", uri: "/")
        }
        message.cmd = "route"
        message.recver = recver
        message.id = request.id
        message.mq = request.mq ?? mq
        message.ack = false
        // Under access control the router shows its right to consume the MQ.
        if message.token == nil, let token = options.token { message.token = token }
        // The answer leaves on a connection of this consumer: the node accepts a `route` only from a connection that
        // consumed from an MQ the caller produced to. In a cluster the caller's session is on the broker that
        // delivered the request.
        if let cluster {
            if let server = request.server {
                message.server = server
                if let client = cluster.routeClient(server: server) { return try await client.sendOneWay(message) }
            }
            return try await broker.sendOneWay(message)
        }
        try await primary.client.sendOneWay(message)
    }

    /// Acknowledges the last message taken and closes the connection (the node then redelivers anything it handed
    /// out that was not taken yet).
    public func close() async {
        // Not cancelled with the caller: acknowledging the last message must still happen.
        let primary = self.primary
        let cluster = self.cluster
        await Task {
            await primary.close()
            await cluster?.close()
        }.value
    }
}

/// One consumer connection: its client, and the consume in flight on it.
final class ConsumerConnection: Sendable {
    let client: MessageClient
    let mq: String
    let options: Options
    private let state = NIOLockedValueBox(State())

    typealias Options = Consumer.Options

    private struct State {
        /// A consume sent and not answered yet, and the local limit of the take that sent it.
        var outstanding: PendingReply?
        /// Whether a take is running.
        var busy = false
        /// Whether a message was delivered since the last consume was sent (so it is not acknowledged yet).
        var holdsMessage = false
        var closed = false
    }

    init(client: MessageClient, mq: String, options: Options) {
        self.client = client
        self.mq = mq
        self.options = options
    }

    nonisolated(nonsending) func take(timeout: Duration) async throws -> Message? {
        // Three lock operations on the usual path (start, consume sent, message taken): the start also picks up a
        // consume left outstanding by a cancelled take, and the end releases the take as it records the message.
        let leftOver = try state.withLockedValue { state -> PendingReply? in
            if state.closed { throw ZbusClientError.clientClosed(address: client.address) }
            if state.busy {
                throw ZbusClientError.unsupported(
                    "take() on MQ '\(mq)' was called while another take() on the same consumer is waiting; use one Consumer per task or start(concurrency:)")
            }
            state.busy = true
            return state.outstanding
        }
        var released = false
        defer { if !released { state.withLockedValue { $0.busy = false } } }

        let start = NIODeadline.now()
        let deadline = start + timeout.timeAmount
        var firstPass = true
        while true {
            // The first pass already read what is outstanding, under the start's lock.
            let outstanding = firstPass ? leftOver : state.withLockedValue { $0.outstanding }
            let inherited = outstanding != nil
            let pending = outstanding ?? sendConsume(deadline: deadline, now: firstPass ? start : .now())
            firstPass = false
            let outcome: Result<Outcome, any Error>
            do {
                // A consume this take sent is bounded by the node's answer (and the request timeout); one inherited
                // from a cancelled take may wait longer on the node, so this take stops waiting at its own deadline.
                outcome = .success(classify(try await pending.wait(onCancel: .keepRequest, until: inherited ? deadline : nil, on: client.eventLoop)))
            } catch is PendingReply.WaitExpired {
                return nil
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                outcome = .failure(error)
            }
            if case .success(.message(let message)) = outcome {
                state.withLockedValue { state in
                    if state.outstanding === pending { state.outstanding = nil }
                    state.holdsMessage = true
                    state.busy = false
                }
                released = true
                return message
            }
            state.withLockedValue { if $0.outstanding === pending { $0.outstanding = nil } }

            switch outcome {
            case .failure(let error):
                if case .timedOut = error as? ZbusClientError {
                    // The node never answered: replace the connection so that whatever it hands the dead poll is
                    // redelivered instead of acknowledged by our next consume.
                    client.dropConnection()
                }
                if inherited, let error = error as? ZbusClientError, error.isConnectionFailure {
                    continue  // a previous take's consume broke; consume afresh
                }
                throw error
            case .success(.message):
                preconditionFailure("returned above")
            case .success(.nothing):
                if NIODeadline.now() >= deadline { return nil }
            case .success(.notFound(let body)):
                guard let mode = options.autoCreate else {
                    throw ZbusClientError.rejected(cmd: "consume", mq: mq, status: 404, body: body)
                }
                try await create(mode: mode)
            case .success(.refused(let status, let body)):
                throw ZbusClientError.rejected(cmd: "consume", mq: mq, status: status, body: body)
            }
        }
    }

    /// Sends a consume asking the node to wait until `deadline`, and records it as outstanding.
    private func sendConsume(deadline: NIODeadline, now: NIODeadline) -> PendingReply {
        let remaining = max(0, (deadline - now).nanoseconds)
        var request = Message()
        request.headers.reserveCapacity(6)
        request.cmd = "consume"
        request.mq = mq
        request.id = RequestId.next()
        if let token = options.token { request.token = token }
        if let topic = options.topic { request.topic = topic }
        let waitMillis = (remaining + 999_999) / 1_000_000
        request.headers.set(lowercased: HeaderName.timeout, String(waitMillis))
        let pending = client.submit(request, timeout: .nanoseconds(remaining) + options.replyGrace)
        state.withLockedValue {
            $0.outstanding = pending
            $0.holdsMessage = false
        }
        return pending
    }

    private typealias Outcome = ConsumeReply

    private func classify(_ reply: consuming Message) -> Outcome { ConsumeReply(reply) }

    /// Creates the missing MQ with the consumer's token both as the MQ's `access_token` (without it, a 6.3 node
    /// refuses every consume that carries a token to an open MQ: 403 forever) and as the caller's `token` (under the
    /// node's `auth` section, what grants `admin` on the name).
    private nonisolated(nonsending) func create(mode: QueueMode) async throws {
        let request = MqAdmin.createRequest(mq, mode: mode, accessToken: options.token, token: options.token)
        let reply = try await client.send(request)
        guard reply.status == 200 else {
            throw ZbusClientError.rejected(cmd: "create_mq", mq: mq, status: reply.status ?? 0, body: reply.bodyString)
        }
    }

    /// Acknowledges a message still held (a consume with a zero wait), then closes the connection.
    func close() async {
        let (holds, outstanding) = state.withLockedValue { state -> (Bool, Bool) in
            defer { state.closed = true }
            return (state.holdsMessage && !state.busy, state.outstanding != nil)
        }
        if holds && !outstanding {
            var request = Message()
            request.cmd = "consume"
            request.mq = mq
            if let token = options.token { request.token = token }
            if let topic = options.topic { request.topic = topic }
            request.headers[HeaderName.timeout] = "0"
            // If this consume is handed a message, closing the connection right after puts it back at the head.
            _ = try? await client.send(request, timeout: options.replyGrace)
        }
        await client.close()
    }
}
