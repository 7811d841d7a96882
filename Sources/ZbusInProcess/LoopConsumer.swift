import Logging
import NIOCore
import ZbusClient
import ZbusKernel

/// Consumes one MQ of a node running in this process, on one of the node's event loops, with no task and no thread
/// hop per message: for code that answers messages from event-loop callbacks (the proxy's adapters, the RPC module).
///
/// A loop consumer is an in-process session of the node (``Node/connectInProcess(remoteAddress:onMessage:onClose:)``):
/// its consumes are dispatched straight into the node on the session's loop, and the node hands it each delivered
/// message there. The handler answers every message with ``finish(_:routing:)``, on ``eventLoop``, which hands the
/// answer to the producer's session (found in the node's ``Node/sessions``, as a `route` command would: the answer is
/// not turned into a command and back) and consumes again in the same turn of the loop; that consume acknowledges the
/// message, so a consumer that dies mid-call leaves the message to be redelivered (at-least-once, as ``Consumer``).
///
/// ```swift
/// let consumer = try LoopConsumer(node: node, mq: "Quotes", logger: logger)
/// consumer.start { request in
///     // on consumer.eventLoop; call the service, then, on the same loop:
///     consumer.finish(Message(status: 200, text: "ok"), routing: request)
/// }
/// try await consumer.stop().get()   // after the message in hand is answered
/// ```
///
/// Confined to ``eventLoop`` (``start(_:)`` and ``stop()`` may be called from anywhere), hence `@unchecked Sendable`.
public final class LoopConsumer: @unchecked Sendable {
    /// How a loop consumer consumes.
    public struct Options: Sendable {
        /// The MQ's access token, if it has one.
        public var token: String?
        /// The mode to create the MQ with when it does not exist; `nil` retries until someone creates it.
        public var autoCreate: QueueMode?
        /// Whether an MQ the consumer creates gets ``token`` as its access token (else it is created open).
        public var createWithToken: Bool
        /// The node's `register_token`, sent with the `create_mq`.
        public var registerToken: String?
        /// How long each consume asks the node to wait before it answers 204 (and the consumer consumes again).
        public var pollTimeout: Duration
        /// The pause before consuming again after the node refused a consume (403, 400, a missing MQ).
        public var retryDelay: Duration
        /// Whether each message is handed as the node delivered it (`id` = the consume's id, `rawid` = the producer's
        /// id) rather than as zbus 6 consumers present it (`id` = the producer's id, no `rawid`). For a handler that
        /// reads the producer's id from `rawid` itself (absent when the producer sent none), or needs no id: it saves
        /// rebuilding the header block of every message. ``LoopConsumer/finish(_:routing:)`` answers with the
        /// producer's id either way.
        public var keepsDeliveredForm: Bool

        /// Creates options: a missing MQ is created as a plain open queue, polls wait 10 s, refusals are retried each
        /// second, messages are presented as zbus 6 consumers see them.
        public init(token: String? = nil, autoCreate: QueueMode? = .mq, createWithToken: Bool = false, registerToken: String? = nil,
                    pollTimeout: Duration = .seconds(10), retryDelay: Duration = .seconds(1), keepsDeliveredForm: Bool = false) {
            self.token = token
            self.autoCreate = autoCreate
            self.createWithToken = createWithToken
            self.registerToken = registerToken
            self.pollTimeout = pollTimeout
            self.retryDelay = retryDelay
            self.keepsDeliveredForm = keepsDeliveredForm
        }
    }

    /// The loop the consumer lives on: the handler is called there and ``finish(_:routing:)`` must be called there.
    public let eventLoop: any EventLoop
    /// The MQ consumed.
    public let mq: String
    private let options: Options
    private let logger: Logger
    /// The node's sessions, where the producer of a message is found to answer it.
    private let sessions: SessionRegistry
    /// The consume sent after each answer, built once.
    private let nextConsume: Message
    private var connection: InProcessConnection?
    /// ``nextConsume`` prepared on ``connection`` (stamped, its handler found), as each answer is followed by it.
    private var preparedConsume: PreparedRequest?
    private var handler: ((Message) -> Void)?
    /// What the one command in flight on the session is: its answer is read accordingly.
    private var awaiting = Awaiting.nothing
    /// A message was handed to the handler and not finished yet.
    private var handling = false
    /// A consume is being dispatched: the node may hand it a message, and the handler may answer it, before the
    /// dispatch returns.
    private var dispatching = false
    /// A consume was asked for during a dispatch: sent once that dispatch returns, so that a handler answering at once
    /// (a synchronous RPC method, a request refused before it is sent) drains a backlog in a loop, not in a recursion
    /// one stack level deep per message, which a backlog of thousands would overflow.
    private var consumeAgain = false
    private var stopping = false
    private let stopped: EventLoopPromise<Void>
    /// Refusals are retried every ``Options/retryDelay``: the first of a streak is logged at its level, the rest at
    /// debug (and once a minute), and consuming again at notice.
    private var failures = RepeatedFailureLog()

    private enum Awaiting {
        case nothing
        case consume
        case create
    }

    /// Opens the consumer's session on `node` (nothing is consumed before ``start(_:)``).
    ///
    /// - Throws: ``InProcessConnectionError`` when the node is not running.
    public init(node: Node, mq: String, options: Options = Options(), logger: Logger) throws(InProcessConnectionError) {
        self.mq = mq
        self.options = options
        sessions = node.sessions
        let wait = options.pollTimeout.components
        nextConsume = Self.consumeRequest(mq: mq, token: options.token,
                                          waitMilliseconds: max(0, wait.seconds * 1000 + wait.attoseconds / 1_000_000_000_000_000))
        var logger = logger
        logger[metadataKey: "mq"] = "\(mq)"
        self.logger = logger
        // The session's callbacks reach the consumer through this box until the consumer is built; the session then
        // holds the consumer strongly until it closes (the reference is dropped at close, see `closed()`).
        let box = ConsumerBox()
        let connection = try node.connectInProcess(
            onMessage: { message in box.consumer?.received(message) },
            onClose: { box.consumer?.closed(); box.consumer = nil })
        eventLoop = connection.session.eventLoop
        stopped = eventLoop.makePromise()
        self.connection = connection
        preparedConsume = connection.prepare(nextConsume)
        box.consumer = self
    }

    /// Starts consuming; `handler` is called on ``eventLoop`` with each delivered message (`id` = the producer's id,
    /// `sender` = the producer's session), one at a time: the next comes only after ``finish(_:routing:)``.
    public func start(_ handler: @escaping (Message) -> Void) {
        nonisolated(unsafe) let handler = handler
        eventLoop.execute {
            self.handler = handler
            self.consume()
        }
    }

    /// Routes `reply` to the producer of `request` (the message the handler was given) and consumes the next message,
    /// which acknowledges `request`. Call it once per message, on ``eventLoop``.
    ///
    /// `reply`'s status line is what the producer gets (a message without one is answered 200).
    public func finish(_ reply: consuming Message, routing request: Message) {
        eventLoop.assertInEventLoop()
        handling = false
        guard let connection else { return }
        if let recver = request.sender, let producer = sessions.session(id: recver) {
            var message = consume reply
            if case .request = message.startLine { message.startLine = .status(code: 200, reason: nil) }
            // The producer's id: in `rawid` while the message keeps the form it was delivered in (its `id` is then the
            // consume's), else in `id`.
            message.id = options.keepsDeliveredForm ? request.rawId : request.id
            message.mq = request.mq ?? mq
            producer.send(message)
        } else {
            logger.notice("the producer of a message is gone (or unknown): its answer is dropped", metadata: [
                "id": "\(request.id ?? "-")", "sender": "\(request.sender ?? "-")",
            ])
        }
        if stopping {
            // Acknowledge what was answered, then close: whatever this last consume is handed goes back to the MQ.
            awaiting = .nothing
            connection.dispatchOnLoop(Self.consumeRequest(mq: mq, token: options.token, waitMilliseconds: 0))
            close()
        } else {
            consume()
        }
    }

    /// Stops after the message in hand (if any) is answered and acknowledged; succeeds once the session is closed.
    public func stop() -> EventLoopFuture<Void> {
        eventLoop.execute {
            self.stopping = true
            if !self.handling { self.close() }
        }
        return stopped.futureResult
    }

    // MARK: - Loop-confined

    private func consume() {
        guard !dispatching else {
            consumeAgain = true
            return
        }
        dispatching = true
        defer { dispatching = false }
        repeat {
            consumeAgain = false
            guard let connection, !stopping else { return }
            awaiting = .consume
            if let preparedConsume {
                connection.dispatchOnLoop(preparedConsume)
            } else {
                connection.dispatchOnLoop(nextConsume)
            }
        } while consumeAgain
    }

    /// A consume of `mq` asking the node to wait `waitMilliseconds`. Its `id` is fixed: answers are told apart by
    /// what is awaited, not by id.
    private static func consumeRequest(mq: String, token: String?, waitMilliseconds: Int64) -> Message {
        var request = Message()
        // Room for the node's stamps too (`sender`, `server`, `remote-addr`), so the headers grow only once.
        request.headers.reserveCapacity(8)
        request.cmd = "consume"
        request.mq = mq
        request.id = "loop-consume"
        if let token { request.token = token }
        request.headers.set(lowercased: HeaderName.timeout, String(waitMilliseconds))
        return request
    }

    private func received(_ message: Message) {
        guard !stopping else { return }  // a message handed to the closing consume goes back to the MQ at close
        switch awaiting {
        case .nothing:
            return
        case .create:
            awaiting = .nothing
            if message.status != 200 {
                failures.failed("cannot create the MQ; retrying", reason: "\(message.status ?? 0) \(message.bodyString)", level: .warning,
                                logger: logger)
                return retryLater()
            }
            // Consumed on the next turn, not from inside the node's answer.
            eventLoop.execute { self.consume() }
        case .consume:
            awaiting = .nothing
            switch ConsumeReply(message, presenting: options.keepsDeliveredForm ? .delivered : .rebuild) {
            case .message(let delivered):
                if failures.isFailing { failures.succeeded("consuming again", logger: logger) }
                handling = true
                handler?(delivered)
            case .nothing:
                if failures.isFailing { failures.succeeded("consuming again", logger: logger) }
                eventLoop.execute { self.consume() }
            case .notFound(let body):
                guard let mode = options.autoCreate, let connection else {
                    failures.failed("MQ not found; retrying", reason: "404 \(body)", level: .notice, logger: logger)
                    return retryLater()
                }
                awaiting = .create
                let request = MqAdmin.createRequest(mq, mode: mode, accessToken: options.createWithToken ? options.token : nil,
                                                    registerToken: options.registerToken)
                eventLoop.execute { connection.dispatchOnLoop(request) }
            case .refused(let status, let body):
                failures.failed("the node refuses to let this consumer consume; retrying", reason: "\(status) \(body)",
                                metadata: ["retry_in": "\(options.retryDelay)"], logger: logger)
                retryLater()
            }
        }
    }

    private func retryLater() {
        let delay = options.retryDelay.components.seconds * 1_000_000_000 + options.retryDelay.components.attoseconds / 1_000_000_000
        eventLoop.scheduleTask(in: .nanoseconds(delay)) { self.consume() }
    }

    private func close() {
        guard let connection else { return }
        connection.close()  // `closed()` follows, from the session's close
    }

    private func closed() {
        connection = nil
        preparedConsume = nil
        handler = nil
        stopped.succeed(())
    }
}

/// Lets a session's callbacks reach the consumer built after the session; written once before the session is used,
/// then only on the session's loop.
private final class ConsumerBox: @unchecked Sendable {
    var consumer: LoopConsumer?
}
