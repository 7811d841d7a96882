import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ZbusKernel

/// One MQ-RPC worker on its own TCP connection to the node holding the MQ, driven entirely by its event loop.
///
/// The cycle is `consume` → a request arrives → answer it → write the answer (`cmd: route`) and the next `consume`
/// together, in one flush. The node handles a connection's messages in order, so the route always goes out before the
/// consume that acknowledges the request. A synchronous method is answered right on the event loop, without any task
/// or thread hop; an `async` one runs as a task and the loop writes its answer when it is done.
///
/// The connection is re-established (with backoff) when it drops; the node then redelivers a request the worker held
/// to another worker. A consume that gets no answer within its wait limit plus a grace period marks the connection as
/// dead and replaces it. ``stop()`` finishes the request being answered, acknowledges it and closes.
final class MqRpcWorker: Sendable {
    struct Settings: Sendable {
        let address: HostAndPort
        let mq: String
        let token: String?
        let registerToken: String?
        let pollTimeout: Duration
        let replyGrace: Duration
        let limits: MessageLimits
    }

    private let settings: Settings
    private let responder: RpcResponder
    private let eventLoop: any EventLoop
    private let logger: Logger
    private let name: String
    /// Loop-confined state, reached through the loop.
    private let core: NIOLoopBoundBox<Core>

    init(settings: Settings, responder: RpcResponder, eventLoop: any EventLoop, name: String, logger: Logger) {
        self.settings = settings
        self.responder = responder
        self.eventLoop = eventLoop
        self.name = name
        self.logger = logger
        self.core = NIOLoopBoundBox.makeBoxSendingValue(Core(), eventLoop: eventLoop)
    }

    private final class Core {
        var channel: (any Channel)?
        var stopping = false
        var finished = false
        var reconnectDelay = Duration.milliseconds(100)
        var stopWaiters: [CheckedContinuation<Void, Never>] = []
    }

    /// Connects and starts consuming.
    func start() {
        eventLoop.execute { self.connect() }
    }

    /// Finishes the request being answered (its answer is routed and acknowledged), then closes; returns when closed.
    func stop() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            eventLoop.execute {
                let core = self.core.value
                if core.finished { return continuation.resume() }
                core.stopWaiters.append(continuation)
                guard !core.stopping else { return }
                core.stopping = true
                if let channel = core.channel {
                    channel.pipeline.fireUserInboundEventTriggered(StopRequest())
                }
                // Otherwise a connect or a reconnect is pending: it finishes when it sees `stopping`.
            }
        }
    }

    /// Asks the handler to stop after the request it is answering.
    struct StopRequest: Sendable {}

    private func finish() {
        let core = self.core.value
        guard !core.finished else { return }
        core.finished = true
        let waiters = core.stopWaiters
        core.stopWaiters = []
        for waiter in waiters { waiter.resume() }
    }

    private func connect() {
        let core = self.core.value
        guard !core.stopping else { return finish() }
        let limits = settings.limits
        ClientBootstrap(group: eventLoop)
            .connectTimeout(.seconds(5))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(WorkerHandler(worker: self, limits: limits, allocator: channel.allocator))
                }
            }
            .connect(host: settings.address.host, port: settings.address.port)
            .hop(to: eventLoop)
            .assumeIsolated()
            .whenComplete { result in
                switch result {
                case .success(let channel):
                    core.channel = channel
                    core.reconnectDelay = .milliseconds(100)
                    if core.stopping { channel.close(promise: nil) }
                case .failure(let error):
                    self.logger.notice("MQ-RPC worker cannot connect; retrying", metadata: [
                        "worker": "\(self.name)", "broker": "\(self.settings.address)", "error": "\(error)",
                    ])
                    self.scheduleReconnect()
                }
            }
    }

    /// Called by the handler when its connection closed.
    fileprivate func connectionClosed(fatal: Bool) {
        let core = self.core.value
        core.channel = nil
        if core.stopping || fatal { return finish() }
        scheduleReconnect()
    }

    private func scheduleReconnect() {
        let core = self.core.value
        guard !core.stopping else { return finish() }
        let delay = core.reconnectDelay
        core.reconnectDelay = min(delay * 2, .seconds(5))
        eventLoop.assumeIsolated().scheduleTask(in: delay.nioAmount) {
            self.connect()
        }
    }

    fileprivate var workerSettings: Settings { settings }
    fileprivate var workerResponder: RpcResponder { responder }
    fileprivate var workerLogger: Logger { logger }
    fileprivate var workerName: String { name }
}

/// The handler of a worker connection: its consume/answer cycle, framing messages itself (no pipeline hops).
private final class WorkerHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum State {
        /// A consume is outstanding.
        case waiting(since: NIODeadline)
        /// A request is being answered by an `async` method.
        case answering
        /// Closing.
        case closed
    }

    private let worker: MqRpcWorker
    private let settings: MqRpcWorker.Settings
    private let responder: RpcResponder
    private let logger: Logger
    private var state = State.closed
    private var stopping = false
    private var fatal = false
    private var consumes: UInt64 = 0
    private var watchdog: RepeatedTask?
    private let pollMilliseconds: String
    private let consumeIdPrefix: String
    private let createId: String
    private var framer: InboundFramer
    private let outbound: OutboundBatch

    init(worker: MqRpcWorker, limits: MessageLimits, allocator: ByteBufferAllocator) {
        self.framer = InboundFramer(limits: limits)
        self.outbound = OutboundBatch(allocator: allocator)
        self.worker = worker
        self.settings = worker.workerSettings
        self.responder = worker.workerResponder
        self.logger = worker.workerLogger
        self.pollMilliseconds = String(settings.pollTimeout.wholeMilliseconds)
        self.consumeIdPrefix = "\(worker.workerName)-"
        self.createId = "\(worker.workerName)-create"
    }

    func channelActive(context: ChannelHandlerContext) {
        writeConsume(context: context, waitMilliseconds: pollMilliseconds)
        outbound.flush(context: context)
        // A consume unanswered well past its wait limit means a silent connection: replace it, so the node
        // redelivers whatever it handed to this one.
        let limit = (settings.pollTimeout + settings.replyGrace).nioAmount
        let channel = context.channel
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        watchdog = context.eventLoop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in
            let handler = bound.value
            guard case .waiting(let since) = handler.state, NIODeadline.now() - since > limit else { return }
            handler.logger.notice("MQ-RPC worker got no answer to its consume; reconnecting", metadata: ["worker": "\(handler.worker.workerName)"])
            channel.close(promise: nil)
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        state = .closed
        framer.discardInput()
        outbound.discard()
        watchdog?.cancel()
        watchdog = nil
        worker.connectionClosed(fatal: fatal)
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is MqRpcWorker.StopRequest else { return context.fireUserInboundEventTriggered(event) }
        stopping = true
        // Parked on a consume: nothing is held (the consume acknowledged the last request), so close now; a request
        // the node hands to this consume meanwhile goes back to the MQ when the connection closes.
        if case .waiting = state { context.close(promise: nil) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        framer.append(unwrapInboundIn(data))
        do {
            while let message = try framer.next() { received(message, context: context) }
        } catch {
            framer.discardInput()
            logger.notice("MQ-RPC worker got malformed input; reconnecting", metadata: ["worker": "\(worker.workerName)", "error": "\(error)"])
            context.close(promise: nil)
        }
    }

    private func received(_ message: Message, context: ChannelHandlerContext) {
        guard case .waiting = state else { return }
        let status = message.status ?? 200
        if message.id == createId {
            // The answer to the create_mq sent when the MQ had gone; the consume sent with it is still outstanding.
            guard status == 200 else {
                logger.error("the MQ-RPC queue cannot be created again; worker stopped", metadata: [
                    "mq": "\(settings.mq)", "status": "\(status)", "reason": "\(message.bodyString)",
                ])
                fatal = true
                state = .closed
                context.close(promise: nil)
                return
            }
            return
        }
        if message.rawId == nil {
            // The node's own answers to the consume (no request carries them: requests keep the producer's id).
            let body = message.bodyString
            switch status {
            case 204 where message.body.map({ $0.readableBytes == 0 }) ?? true:
                return consumeAgain(context: context)
            case 404 where body.hasSuffix(") Not Found"):
                // The MQ was removed: create it again (mode MQ|RPC), then consume.
                logger.notice("MQ-RPC queue missing; creating it again", metadata: ["mq": "\(settings.mq)"])
                var create = Message()
                create.cmd = "create_mq"
                create.id = createId
                create.headers[HeaderName.mqName] = settings.mq
                create.headers[HeaderName.mqMode] = String(MqRpcService.queueMode.rawValue)
                if let token = settings.token { create.headers[HeaderName.accessToken] = token }
                if let token = settings.registerToken { create.headers[HeaderName.registerToken] = token }
                outbound.append(create, context: context)
                return consumeAgain(context: context)
            case 403 where body.hasSuffix(") forbidden") || body.hasSuffix(") forbbiden"), 400 where body.hasPrefix("Bad format"):
                logger.error("the node refuses to let the MQ-RPC worker consume; worker stopped", metadata: [
                    "mq": "\(settings.mq)", "status": "\(status)", "reason": "\(body)",
                ])
                fatal = true
                state = .closed
                context.close(promise: nil)
                return
            default:
                break  // a request produced without an id
            }
        }
        if stopping {
            // Handed a request by the acknowledging consume: leave it to another worker (closing gives it back).
            state = .closed
            context.close(promise: nil)
            return
        }
        var request = message
        // As zbus 6 consumers do: the request's id is the producer's; `sender` stays for the route.
        request.id = request.headers.removeValue(lowercased: HeaderName.rawId)
        switch responder.answer(request) {
        case .ready(let reply):
            routeAndConsume(reply, to: request, context: context)
        case .later(let makeReply):
            state = .answering
            let request = request
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            let eventLoop = context.eventLoop
            Task {
                let reply = await makeReply()
                eventLoop.execute {
                    let (handler, context) = bound.value
                    guard case .answering = handler.state else { return }  // the connection closed meanwhile
                    handler.routeAndConsume(reply, to: request, context: context)
                }
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.notice("MQ-RPC worker connection failed", metadata: ["worker": "\(worker.workerName)", "error": "\(error)"])
        context.close(promise: nil)
    }

    /// Writes the answer (routed to the caller) and the consume that acknowledges the request, in one flush.
    private func routeAndConsume(_ reply: Message, to request: Message, context: ChannelHandlerContext) {
        if let recver = request.sender {
            // A status line carries the status as zbus 6 Java services sent it: every node forwards it as is (a
            // `reply_code` header would need a node that converts it, which 6.3.0 did not).
            var route = reply
            route.cmd = "route"
            route.recver = recver
            route.id = request.id
            route.mq = request.mq ?? settings.mq
            route.ack = false
            outbound.append(route, context: context)
        } else {
            logger.warning("a request without sender cannot be answered", metadata: ["id": "\(request.id ?? "-")"])
        }
        // Stopping: a consume that waits for nothing only acknowledges; its answer closes the connection.
        writeConsume(context: context, waitMilliseconds: stopping ? "0" : pollMilliseconds)
        outbound.flush(context: context)
    }

    private func consumeAgain(context: ChannelHandlerContext) {
        if stopping {
            state = .closed
            context.close(promise: nil)
            return
        }
        writeConsume(context: context, waitMilliseconds: pollMilliseconds)
        outbound.flush(context: context)
    }

    private func writeConsume(context: ChannelHandlerContext, waitMilliseconds: String) {
        consumes &+= 1
        var consume = Message()
        consume.headers.reserveCapacity(5)
        consume.cmd = "consume"
        consume.mq = settings.mq
        consume.id = consumeIdPrefix + String(consumes, radix: 36)
        consume.headers.set(lowercased: HeaderName.timeout, waitMilliseconds)
        if let token = settings.token { consume.token = token }
        state = .waiting(since: .now())
        outbound.append(consume, context: context)
    }
}

extension Duration {
    /// The duration as a NIO `TimeAmount`.
    var nioAmount: TimeAmount {
        .nanoseconds(components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000)
    }

    /// The duration in whole milliseconds (at least 0).
    var wholeMilliseconds: Int64 {
        max(0, components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000)
    }
}
