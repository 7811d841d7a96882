import NIOCore
import NIOPosix
import ZbusKernel

/// Calls a legacy service from one event loop: the caller side of an adapter worker that runs on a node loop (see
/// ``LoopAdapterWorker``), one call at a time, over one keep-alive connection opened on that same loop, so the
/// request, the service's reply and the routed answer never leave the loop and no task or lock is involved.
///
/// The connection's pipeline (`configure`, from the adapter kind) takes the caller's ``Message`` and gives back the
/// reply as a ``Message``: the conversion happens in the codec handlers, so nothing here is generic and no generic
/// metadata is looked up per call. The codec closes a connection the service will not keep (HTTP without
/// keep-alive).
///
/// The connection rules are ``LegacyClientPool``'s: it is kept only after a complete, well-formed reply; one that
/// failed, timed out or said too much is closed, and the next call connects afresh. A kept connection the service
/// closed is retried once on a fresh one only when that cannot make the service act twice (seen closed before the
/// write, or no reply byte and a repeatable request, see `notRepeatable`). Confined to ``eventLoop``, hence
/// `@unchecked Sendable`.
final class LoopLegacyClient: LoopLegacyCaller, @unchecked Sendable {
    /// Adds the kind's codec handlers (``Message`` out, ``Message`` in) to a new channel.
    typealias Configure = @Sendable (any Channel) throws -> Void
    typealias Reply = Message

    let eventLoop: any EventLoop
    private let service: String
    private let address: HostAndPort
    private let connectTimeout: Duration
    private let timeout: Duration
    /// `timeout` as the event loop counts time, converted once: converting it for every call cost about 190
    /// instructions.
    private let callTimeout: TimeAmount
    private let configure: Configure
    /// The codec among the handlers `configure` adds that may be called directly (``DirectMessageExchange``), if any.
    private let directExchange: (@Sendable (any Channel) -> (any DirectMessageExchange)?)?
    /// What a call that passes its deadline fails with (built once: naming the address costs more than a call).
    private let timedOut: ProxyError
    private let errors: ExchangeErrors
    /// Refuses (with a ``ProxyError``) a message the service cannot be sent, before anything is written.
    private let check: ((Message) throws -> Void)?
    /// Why a message may not be sent again once written, or `nil` when it may (``LegacyClientPool``'s rule).
    private let notRepeatable: (Message) -> String?
    private var connection: (channel: any Channel, handler: LoopExchangeHandler)?
    private var shutDown = false
    /// The call waiting for its reply: its deadline, and the connection it waits on (failed with `timedOut` and
    /// closed when the deadline passes).
    private var inFlight: (deadline: NIODeadline, channel: any Channel, handler: LoopExchangeHandler)?
    /// One timer for the worker's calls, not one per call: armed for the deadline of the call in flight, it finds
    /// that call answered (or a later one, with a later deadline, in flight) nearly always, and re-arms only then.
    private var timer: Scheduled<Void>?

    init(on eventLoop: any EventLoop, service: String, address: HostAndPort, connectTimeout: Duration, timeout: Duration,
         configure: @escaping Configure, exchange: (@Sendable (any Channel) -> (any DirectMessageExchange)?)? = nil,
         check: ((Message) throws -> Void)? = nil, notRepeatable: @escaping (Message) -> String?) {
        self.eventLoop = eventLoop
        self.service = service
        self.address = address
        self.connectTimeout = connectTimeout
        self.timeout = timeout
        callTimeout = timeout.nioTimeAmount
        self.configure = configure
        self.directExchange = exchange
        self.check = check
        self.notRepeatable = notRepeatable
        timedOut = ProxyError.timedOut(service: service, address: address.description, after: timeout)
        errors = ExchangeErrors(service: service, address: address.description)
    }

    func call(_ request: Message, completion: @escaping LegacyCallCompletion) {
        eventLoop.assertInEventLoop()
        if let check {
            do { try check(request) } catch { return completion(.failure(error)) }
        }
        let deadline = NIODeadline.now() + callTimeout
        if let connection, connection.channel.isActive {
            exchange(request, on: connection, reused: true, deadline: deadline, completion: completion)
        } else {
            connection = nil
            connectThenExchange(request, deadline: deadline, completion: completion)
        }
    }

    func shutdown() {
        eventLoop.assertInEventLoop()
        shutDown = true
        timer?.cancel()
        timer = nil
        connection?.channel.close(promise: nil)
        connection = nil
    }

    private func armTimer(for deadline: NIODeadline) {
        guard timer == nil else { return }
        timer = eventLoop.scheduleTask(deadline: deadline) { self.timerFired() }
    }

    private func timerFired() {
        timer = nil
        guard let call = inFlight else { return }
        if call.deadline <= .now() {
            inFlight = nil
            call.handler.fail(timedOut)
            call.channel.close(promise: nil)
        } else {
            armTimer(for: call.deadline)
        }
    }

    private func exchange(_ request: Message, on connection: (channel: any Channel, handler: LoopExchangeHandler), reused: Bool,
                          deadline: NIODeadline, completion: @escaping LegacyCallCompletion) {
        let (channel, handler) = connection
        let begun = handler.begin { result in
            self.inFlight = nil
            switch consume result {
            case .success(let reply):
                if self.shutDown { self.drop(channel) }
                completion(.success(consume reply))
            case .failure(let error as ExchangeErrors.Closed) where reused && !self.shutDown:
                // A kept connection the service closed while idle (restart, idle timeout): one more try, fresh; but
                // not for a request the service may already have acted on.
                self.drop(channel)
                if error.requestSent, let why = self.notRepeatable(request) {
                    return completion(.failure(ProxyError.closedAfterRequest(service: self.service, address: self.address.description, why: why)))
                }
                self.connectThenExchange(request, deadline: deadline, completion: completion)
            case .failure(let error):
                self.drop(channel)
                completion(.failure((error as? ExchangeErrors.Closed)?.proxyError ?? error))
            }
        }
        guard begun else { return }
        // The timeout: the worker's timer on this loop, no task, thread, promise or closure per call.
        inFlight = (deadline, channel, handler)
        armTimer(for: deadline)
        // A failed write closes the channel, which fails the call (as a connection closed after the request was
        // sent: retried once if reused and the request may be repeated).
        handler.write(request, on: channel)
    }

    private func drop(_ channel: any Channel) {
        channel.close(promise: nil)
        if connection?.channel === channel { connection = nil }
    }

    private func connectThenExchange(_ request: Message, deadline: NIODeadline,
                                     completion: @escaping LegacyCallCompletion) {
        let remaining = deadline - .now()
        guard remaining > .zero else { return completion(.failure(timedOut)) }
        guard !shutDown else {
            return completion(.failure(ProxyError.serviceDown(service: service, address: address.description, reason: "the adapter is stopping")))
        }
        let configure = self.configure
        let directExchange = self.directExchange
        let errors = self.errors
        let service = self.service
        let address = self.address
        ClientBootstrap(group: eventLoop)
            .connectTimeout(min(connectTimeout.nioTimeAmount, remaining))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try configure(channel)
                    let handler = LoopExchangeHandler(errors: errors)
                    try channel.pipeline.syncOperations.addHandler(handler)
                    if let codec = directExchange?(channel) { handler.exchangeDirectly(with: codec) }
                }
            }
            .connect(host: address.host, port: address.port)
            .flatMapThrowing { channel in
                (channel, try channel.pipeline.syncOperations.handler(type: LoopExchangeHandler.self))
            }
            .whenComplete { result in
                switch result {
                case .success(let connection):
                    if self.shutDown {
                        connection.0.close(promise: nil)
                        return completion(.failure(ProxyError.serviceDown(service: service, address: address.description, reason: "the adapter is stopping")))
                    }
                    self.connection = connection
                    self.exchange(request, on: connection, reused: false, deadline: deadline, completion: completion)
                case .failure(ChannelError.connectTimeout(_)) where deadline <= .now():
                    completion(.failure(self.timedOut))
                case .failure(let error):
                    completion(.failure(ProxyError.serviceDown(service: service, address: address.description, reason: LegacyConnectFailure.describe(error))))
                }
            }
    }
}

/// What a loop caller hands a call's outcome to. The outcome is handed over (`consuming`), not lent: the worker adds
/// the caller's `id` and `mq` to the reply, and a reply still shared with a callback up the chain was copied for it,
/// header block and all (about 900 instructions a bus call).
typealias LegacyCallCompletion = @Sendable (consuming Result<Message, any Error>) -> Void

/// Calls a legacy service from one event loop, one call at a time (what an adapter kind gives a loop worker).
protocol LoopLegacyCaller: AnyObject, Sendable {
    /// The loop every method is called on and `completion` is called on.
    var eventLoop: any EventLoop { get }
    /// Sends `message` to the service; `completion` gets its reply as a message, or the error (a ``ProxyError`` for
    /// a timeout, a refused connection or an unreadable reply), exactly once.
    func call(_ message: Message, completion: @escaping LegacyCallCompletion)
    /// Closes the connection; calls made afterwards fail.
    func shutdown()
}

/// A built-in adapter kind whose calls can run on a node's event loop (see ``LoopAdapterWorker``).
protocol LoopProxyAdapter: DescribedProxyAdapter {
    /// A caller for one worker on `eventLoop`, each call limited to `timeout` (connect included).
    func makeLoopCaller(on eventLoop: any EventLoop, timeout: Duration) -> any LoopLegacyCaller
    /// Requests in flight on one connection (`pipeline`), which only loop workers use.
    var pipelineDepth: Int { get }
}

/// Says why a connection to a legacy service could not be made.
enum LegacyConnectFailure {
    static func describe(_ error: any Error) -> String {
        if let error = error as? NIOConnectionError {
            if let first = error.connectionErrors.first { return "connect failed: \(ErrorText.describe(first.error))" }
            if let dns = error.dnsAAAAError ?? error.dnsAError { return "cannot resolve host: \(dns)" }
        }
        return "connect failed: \(ErrorText.describe(error))"
    }
}

/// Pairs the one request in flight on a loop connection with its reply, by callback; loop-confined (the client reaches
/// it only on the channel's event loop), hence `@unchecked Sendable`.
///
/// The reply is handed over when the read that brought it is complete (or the connection closes), not as it is
/// decoded: the callback writes the next request on this connection at once, and bytes still waiting in the same read
/// (a service that answered twice) would otherwise be decoded as that request's reply, which the next caller would
/// get. Read to the end first, a second reply is seen as what it is: the connection is closed, the first reply stands.
final class LoopExchangeHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = Message

    private let errors: ExchangeErrors
    private var pending: ((consuming Result<Message, any Error>) -> Void)?
    /// The reply read for the call in flight, handed over at the end of the read.
    private var reply: Message?
    private var active = true
    private var context: ChannelHandlerContext?
    /// The codec in front of it, when it is called directly rather than through the pipeline.
    private var codec: (any DirectMessageExchange)?

    init(errors: ExchangeErrors) {
        self.errors = errors
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    /// Talks to `codec` by direct calls from now on (see ``PipelinedConnection/exchangeDirectly(with:)``).
    func exchangeDirectly(with codec: any DirectMessageExchange) {
        self.codec = codec
        codec.replySink = { [unowned self] answer in received(answer) }
    }

    /// Writes and flushes the request of the call begun.
    func write(_ request: Message, on channel: any Channel) {
        if let codec {
            codec.writeRequest(request)
            channel.flush()
        } else {
            channel.writeAndFlush(request, promise: nil)
        }
    }

    /// Starts waiting for the reply to the request about to be written; on a closed connection, fails the call at
    /// once (as closed) and returns `false`.
    func begin(_ callback: @escaping (consuming Result<Message, any Error>) -> Void) -> Bool {
        guard active else {
            callback(.failure(errors.closed(requestSent: false)))
            return false
        }
        pending = callback
        return true
    }

    /// Fails the request in flight, if any.
    func fail(_ error: any Error) {
        guard let callback = pending else { return }
        pending = nil
        reply = nil
        callback(.failure(error))
    }

    /// Hands the reply read over, if any.
    private func deliver() {
        guard let callback = pending, let reply = reply.take() else { return }
        pending = nil
        callback(.success(consume reply))
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        received(unwrapInboundIn(data))
    }

    private func received(_ answer: Message) {
        guard pending != nil, reply == nil else {
            // Bytes that answer nothing (a second reply, or one nobody asked for): the connection can no longer be
            // trusted to pair replies with requests. A reply already read still stands (handed over at the close).
            context?.close(promise: nil)
            return
        }
        reply = answer
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        deliver()
        context.fireChannelReadComplete()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Garbage after a complete reply does not undo it: the reply is handed over as the connection closes.
        if reply == nil { fail(errors.garbage(error)) }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        active = false
        deliver()
        fail(errors.closed(requestSent: true))  // a call in flight was written in the same turn it began
        context.fireChannelInactive()
    }
}
