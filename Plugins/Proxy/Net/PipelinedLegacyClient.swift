import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ZbusKernel

/// Calls a legacy service from one event loop with requests pipelined (an adapter's `pipeline: N`): the loop workers
/// of that loop share its connections, and each connection carries up to `depth` requests at once, answered in order
/// (HTTP/1.1 pipelining, or a framed TCP service that answers its records in order). The requests made in one turn of
/// the loop go out in one write, and the service's answers to them come back in one read: a system call, and a
/// wake-up of the service, per batch rather than per call. Loop-confined, hence `@unchecked Sendable`.
///
/// What pipelining costs, and how it is bounded:
/// - A slow answer holds up the answers behind it on its connection (head-of-line blocking). Each call keeps its own
///   deadline; when the oldest call on a connection passes it, that call gets its 504 and the connection is closed,
///   since the late answer would otherwise be read as the next call's. The calls behind it were sent and are not
///   repeated: they get a 502 saying so.
/// - A connection the service closes with calls in flight fails them with a 502 (sent, not repeated), except:
///   - a call that was the only one written to a connection reused after it had gone idle, with `retriable` true (an
///     idempotent HTTP method): the service most likely closed the idle connection as it was reused, so that call is
///     tried once more on a fresh connection, as the one-call client does;
///   - the `retriable` calls behind an answer that said the connection closes after it (HTTP `connection: close`, as
///     nginx says every `keepalive_requests`): a service that says so processes nothing after that answer (RFC 9112
///     9.6), so they are sent again on another connection. Otherwise every such close would fail the calls pipelined
///     behind it. Each such close answers a call, so this cannot go on without progress; the deadline bounds it.
/// - The connections opened are bounded by the loop's workers over `depth` (each worker has one call at a time).
final class PipelinedLegacyClient: LoopLegacyCaller, @unchecked Sendable {
    /// The largest `pipeline` taken.
    static let maxDepth = 64

    let eventLoop: any EventLoop
    private let service: String
    private let address: HostAndPort
    private let connectTimeout: Duration
    private let timeout: Duration
    /// `timeout` as the event loop counts time, converted once: converting it for every call cost about 190
    /// instructions.
    private let callTimeout: TimeAmount
    private let depth: Int
    private let configure: @Sendable (any Channel) throws -> Void
    private let exchange: (@Sendable (any Channel) -> (any DirectMessageExchange)?)?
    private let check: (@Sendable (Message) throws -> Void)?
    private let retriable: @Sendable (Message) -> Bool
    private let errors: ExchangeErrors
    private let timedOut: ProxyError
    private var connections: [PipelinedConnection] = []
    private var timer: Scheduled<Void>?
    /// When `timer` fires.
    private var timerDeadline = NIODeadline.distantFuture
    private var flushScheduled = false
    private var shutDown = false

    /// - Parameters:
    ///   - depth: requests in flight on one connection at most.
    ///   - configure: adds the handlers that write a ``Message`` as a request and read each reply as a ``Message``.
    ///   - exchange: the codec among them that the connection may call directly (``DirectMessageExchange``), if any.
    ///   - check: refuses a request before anything is sent (a 400 for a body the framing cannot carry).
    ///   - retriable: whether a request may be sent twice (see the type's notes).
    init(on eventLoop: any EventLoop, service: String, address: HostAndPort, connectTimeout: Duration, timeout: Duration,
         depth: Int, configure: @escaping @Sendable (any Channel) throws -> Void,
         exchange: (@Sendable (any Channel) -> (any DirectMessageExchange)?)? = nil,
         check: (@Sendable (Message) throws -> Void)? = nil, retriable: @escaping @Sendable (Message) -> Bool) {
        self.eventLoop = eventLoop
        self.service = service
        self.address = address
        self.connectTimeout = connectTimeout
        self.timeout = timeout
        callTimeout = timeout.nioTimeAmount
        self.depth = depth
        self.configure = configure
        self.exchange = exchange
        self.check = check
        self.retriable = retriable
        self.errors = ExchangeErrors(service: service, address: address.description)
        self.timedOut = ProxyError.timedOut(service: service, address: address.description, after: timeout)
    }

    func call(_ request: Message, completion: @escaping LegacyCallCompletion) {
        eventLoop.assertInEventLoop()
        if let check {
            do { try check(request) } catch { return completion(.failure(error)) }
        }
        send(PipelinedConnection.Call(request: request, deadline: .now() + callTimeout, retried: false,
                                      completion: completion))
    }

    /// Closes every connection; calls in flight fail, calls made afterwards fail.
    func shutdown() {
        eventLoop.assertInEventLoop()
        shutDown = true
        timer?.cancel()
        timer = nil
        let open = connections
        connections = []
        for connection in open { connection.close() }
    }

    private func send(_ call: PipelinedConnection.Call) {
        guard !shutDown else {
            return call.completion(.failure(ProxyError.serviceDown(service: service, address: address.description, reason: "the adapter is stopping")))
        }
        guard call.deadline > .now() else { return call.completion(.failure(timedOut)) }
        // The first connection with room: filling one before the next keeps the batches large.
        let connection = connections.first { $0.isUsable && $0.count < depth } ?? open()
        connection.enqueue(call)
        scheduleFlush()
        armTimer(for: call.deadline)
    }

    /// A new connection, taking calls at once (they are written when it is up).
    private func open() -> PipelinedConnection {
        let connection = PipelinedConnection(errors: errors, retriable: retriable) { [self] connection, calls in
            closed(connection, handingBack: calls)
        }
        connections.append(connection)
        let configure = self.configure
        let exchange = self.exchange
        ClientBootstrap(group: eventLoop)
            .connectTimeout(min(connectTimeout, timeout).nioTimeAmount)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try configure(channel)
                    try channel.pipeline.syncOperations.addHandler(connection)
                    if let codec = exchange?(channel) { connection.exchangeDirectly(with: codec) }
                }
            }
            .connect(host: address.host, port: address.port)
            .whenComplete { [self] result in
                switch result {
                case .success(let channel):
                    if shutDown { channel.close(promise: nil) }
                    connection.connected(channel)
                    scheduleFlush()
                case .failure(ChannelError.connectTimeout(_)):
                    connection.connectFailed(timedOut)
                case .failure(let error):
                    connection.connectFailed(ProxyError.serviceDown(service: service, address: address.description,
                                                                    reason: LegacyConnectFailure.describe(error)))
                }
            }
        return connection
    }

    /// A connection went away: it is forgotten, and the calls it hands back (sent to a connection the service closed
    /// without processing them) are made again on another.
    private func closed(_ connection: PipelinedConnection, handingBack calls: [PipelinedConnection.Call]) {
        connections.removeAll { $0 === connection }
        for call in calls { send(call) }
    }

    /// Flushes, once the loop has run what this turn brought, every connection written to: the requests of one turn
    /// go out together.
    private func scheduleFlush() {
        guard !flushScheduled else { return }
        flushScheduled = true
        eventLoop.execute { [self] in
            flushScheduled = false
            for connection in connections { connection.flushIfNeeded() }
        }
    }

    /// Makes the timer fire by `deadline`. Calls come with ever later deadlines, so nearly always it is armed already
    /// for an earlier one; but while it fires, a call made from an expired call's callback arms it a whole timeout
    /// ahead before the next deadline of another connection is known: that one moves it back.
    private func armTimer(for deadline: NIODeadline) {
        if let timer {
            guard deadline < timerDeadline else { return }
            timer.cancel()
        }
        timerDeadline = deadline
        timer = eventLoop.scheduleTask(deadline: deadline) { [self] in timerFired() }
    }

    /// Expires the connections whose oldest call is past its deadline, then waits for the next deadline.
    private func timerFired() {
        timer = nil
        let now = NIODeadline.now()
        var next: NIODeadline?
        for connection in connections {
            guard let deadline = connection.oldestDeadline else { continue }
            if deadline <= now {
                connection.expire(timedOut: timedOut, behind: errors.abandoned())
            } else if next.map({ deadline < $0 }) ?? true {
                next = deadline
            }
        }
        if let next { armTimer(for: next) }
    }
}

/// One pipelined connection: the calls written to it (or waiting for it to connect), answered in order. Its last
/// handler; loop-confined.
///
/// Answers are handed over when the read that brought them is complete, as ``LoopExchangeHandler`` does: an answer's
/// callback makes the next call at once, and the codec must have finished with the bytes at hand before that call's
/// request is counted as owed.
final class PipelinedConnection: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = Message

    /// A call: its request (kept until the answer, for a retry), deadline and callback.
    struct Call {
        let request: Message
        let deadline: NIODeadline
        var retried: Bool
        let completion: LegacyCallCompletion
    }

    private let errors: ExchangeErrors
    /// Whether a request may be sent twice (see the client).
    private let retriable: @Sendable (Message) -> Bool
    /// Told once, when it closes, with the calls to make again elsewhere.
    private let onClose: (PipelinedConnection, [Call]) -> Void
    private var channel: (any Channel)?
    /// The codec in front of it, when it is called directly rather than through the pipeline.
    private var codec: (any DirectMessageExchange)?
    /// The calls in order. Once connected, every one has its request written (a call is written as it comes).
    private var calls = CircularBuffer<Call>(initialCapacity: 4)
    /// Whether the first call written may be sent again if the connection turns out closed (see the client).
    private var headRetriable = false
    /// Answers read in the current read, handed over at its end.
    private var answers: [Message] = []
    private var needsFlush = false
    private var finished = false
    /// It is going (closed, or its reply could not be read): it takes no more calls, although it still hands over the
    /// answers it read. A call made from one of those answers' callbacks (a loop worker's next call) would otherwise be
    /// written to it, never sent, and failed with it: a request that may not be repeated lost for nothing.
    private var going = false
    /// Answers read since it connected (a connection that has answered and gone idle may be closed by the service).
    private var answered = 0
    /// The service said it closes the connection after the last answer read: the calls behind it were not processed.
    private var closeAnnounced = false

    init(errors: ExchangeErrors, retriable: @escaping @Sendable (Message) -> Bool,
         onClose: @escaping (PipelinedConnection, [Call]) -> Void) {
        self.errors = errors
        self.retriable = retriable
        self.onClose = onClose
    }

    /// Whether it takes calls.
    var isUsable: Bool { !finished && !going }
    /// Calls taken and not answered.
    var count: Int { calls.count }
    /// The deadline of its oldest call.
    var oldestDeadline: NIODeadline? { calls.first?.deadline }

    /// Takes a call; writes its request now if connected (flushed with the turn's others). Whether it may be sent twice
    /// is asked (here) only of a call that is the only one on a kept connection that had gone idle.
    func enqueue(_ call: Call) {
        if calls.isEmpty { headRetriable = answered > 0 && !call.retried && retriable(call.request) }
        calls.append(call)
        if let channel { write(call.request, on: channel) }
    }

    func connected(_ channel: any Channel) {
        guard !finished else { return channel.close(promise: nil) }
        self.channel = channel
        for call in calls { write(call.request, on: channel) }
    }

    func connectFailed(_ error: any Error) {
        finish(failing: error, behind: error)
    }

    func flushIfNeeded() {
        guard needsFlush, let channel else { return }
        needsFlush = false
        channel.flush()
    }

    /// The oldest call is past its deadline: it gets `timedOut`; the calls behind it, sent on a connection that can
    /// no longer be trusted to pair answers, get `behind`.
    func expire(timedOut: any Error, behind: any Error) {
        finish(failing: timedOut, behind: behind)
    }

    func close() {
        let closed = errors.closed().proxyError
        finish(failing: closed, behind: closed)
    }

    private func write(_ request: Message, on channel: any Channel) {
        needsFlush = true
        if let codec { codec.writeRequest(request) } else { channel.write(request, promise: nil) }
    }

    /// Talks to `codec` by direct calls from now on: requests to its ``DirectMessageExchange/writeRequest(_:)``,
    /// answers from its ``DirectMessageExchange/replySink``. A message passed through the pipeline is boxed in an
    /// `NIOAny` (an allocation and a dynamic cast each way), and a write from outside enters it at its tail: about
    /// 3,800 instructions a call in all (callgrind). The codec is the handler just in front of this one on the same
    /// loop, so nothing else sees these messages anyway.
    func exchangeDirectly(with codec: any DirectMessageExchange) {
        self.codec = codec
        codec.replySink = { [unowned self] answer in received(answer) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        received(unwrapInboundIn(data))
    }

    private func received(_ answer: Message) {
        guard !finished else { return }
        answers.append(answer)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        deliver()
        context.fireChannelReadComplete()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Answers read before the garbage stand; the calls still owed fail with it.
        going = true
        deliver()
        finish(failing: errors.garbage(error), behind: errors.garbage(error))
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is LegacyAnswerClosesConnection else { return context.fireUserInboundEventTriggered(event) }
        closeAnnounced = true
    }

    func channelInactive(context: ChannelHandlerContext) {
        going = true
        deliver()
        let closed = errors.closed()
        finish(failing: closed.proxyError, behind: closed.proxyError, retryHead: true)
        context.fireChannelInactive()
    }

    private func deliver() {
        guard !answers.isEmpty else { return }
        // Taken out in order, not iterated: each answer is handed over unshared (see `LegacyCallCompletion`).
        var read = answers
        answers = []
        read.reverse()
        while let answer = read.popLast() {
            guard let call = calls.popFirst() else { break }
            answered += 1
            headRetriable = false
            call.completion(.success(consume answer))
        }
    }

    /// Closes and tells the client. The oldest call fails with `error`, the others (all sent) with `behind`; handed
    /// back to be made on another connection instead, when `retryHead`: every retriable call if the service said it
    /// closes after the last answer (it processed none of them), or the oldest if it is retriable and alone. A
    /// connection that never came up fails every call with `error` (nothing was sent, and another try would fail the
    /// same way).
    private func finish(failing error: any Error, behind: any Error, retryHead: Bool = false) {
        guard !finished else { return }
        finished = true
        channel?.close(promise: nil)
        let alone = calls.count == 1
        var handBack: [Call] = []
        var index = 0
        while var call = calls.popFirst() {
            defer { index += 1 }
            if channel == nil {
                call.completion(.failure(error))
            } else if retryHead && closeAnnounced && retriable(call.request) {
                handBack.append(call)
            } else if index == 0 && retryHead && headRetriable && alone {
                call.retried = true
                handBack.append(call)
            } else {
                call.completion(.failure(index == 0 ? error : behind))
            }
        }
        onClose(self, handBack)
    }
}

/// Told (as a user inbound event) by a connection's codec as it closes the connection after an answer that ends it: one
/// that said the connection would not be kept (HTTP `connection: close`, an HTTP/1.0 answer without keep-alive), after
/// which the service processes no request, or (rarely) one framed so that the codec does not trust the connection
/// with another. Either way the calls behind it that may be repeated are sent again.
struct LegacyAnswerClosesConnection {}

extension ExchangeErrors {
    /// A pipelined call behind one that timed out: sent, but its answer can no longer be told from the late one.
    func abandoned() -> ProxyError {
        .badReply(service: service, address: address,
                  reason: "an earlier request on the same pipelined connection timed out, so the connection was closed; this request was sent and is not repeated")
    }
}

/// An adapter's pipelined clients, one per event loop, shared by the loop workers of that loop: each worker's
/// ``caller(on:make:)`` is a use, given back by its `shutdown()`; the last one closes the loop's client.
final class PipelinedClients: Sendable {
    private let clients = NIOLockedValueBox<[ObjectIdentifier: (client: PipelinedLegacyClient, users: Int)]>([:])

    /// A worker's caller on `eventLoop`: the loop's client, made by `make` if there is none.
    func caller(on eventLoop: any EventLoop, make: () -> PipelinedLegacyClient) -> any LoopLegacyCaller {
        let key = ObjectIdentifier(eventLoop)
        let client = clients.withLockedValue { clients in
            var entry = clients[key] ?? (make(), 0)
            entry.users += 1
            clients[key] = entry
            return entry.client
        }
        return Use(client: client) { [self] in
            clients.withLockedValue { clients in
                guard var entry = clients[key], entry.client === client else { return false }
                entry.users -= 1
                clients[key] = entry.users > 0 ? entry : nil
                return entry.users == 0
            }
        }
    }

    /// One worker's use of a shared client.
    private final class Use: LoopLegacyCaller, @unchecked Sendable {
        private let client: PipelinedLegacyClient
        /// Gives the use back; `true` when it was the last.
        private let release: @Sendable () -> Bool
        private var released = false

        init(client: PipelinedLegacyClient, release: @escaping @Sendable () -> Bool) {
            self.client = client
            self.release = release
        }

        var eventLoop: any EventLoop { client.eventLoop }

        func call(_ message: Message, completion: @escaping LegacyCallCompletion) {
            client.call(message, completion: completion)
        }

        func shutdown() {
            guard !released else { return }
            released = true
            if release() { client.shutdown() }
        }
    }
}

/// A codec that the handler behind it may call directly instead of through the channel pipeline, so that the messages
/// they exchange are not boxed (see ``PipelinedConnection/exchangeDirectly(with:)``). Confined to the channel's loop.
protocol DirectMessageExchange: AnyObject {
    /// Writes `request` as a write through the pipeline would (not flushed).
    func writeRequest(_ request: Message)
    /// Where each reply goes instead of the next handler's `channelRead`, when set.
    var replySink: ((Message) -> Void)? { get set }
}

extension DirectMessageExchange where Self: ChannelHandler & SendableMetatype {
    /// Finds this codec in a connection's pipeline: what a legacy client is given (its `exchange`) to call it
    /// directly.
    static var inPipeline: @Sendable (any Channel) -> (any DirectMessageExchange)? {
        { channel in try? channel.pipeline.syncOperations.handler(type: Self.self) }
    }
}
