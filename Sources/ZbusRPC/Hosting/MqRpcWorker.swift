import Logging
import NIOCore
import ZbusClient
import ZbusKernel

/// One MQ-RPC worker: a ``MessageClient`` of its own, driven by the client's event loop.
///
/// The cycle is `consume` → a request arrives → answer it → write the answer (`cmd: route`) and the next `consume`
/// together, in one flush. The node handles a connection's messages in order, so the route always goes out before the
/// consume that acknowledges the request. A synchronous method is answered right on the event loop, in the callback of
/// ``MessageClient/send(_:timeout:onReply:)``, without any task or thread hop; an `async` one runs as a task and the
/// loop writes its answer when it is done.
///
/// The client owns the connection: it reconnects (with its backoff) when the connection drops, and the node then
/// redelivers a request the worker held to another worker. A consume that gets no answer within its wait limit plus a
/// grace period times out, and the worker drops the connection as dead. ``stop()`` finishes the request being
/// answered, acknowledges it and closes.
final class MqRpcWorker: Sendable {
    struct Settings: Sendable {
        let mq: String
        let token: String?
        let registerToken: String?
        let pollTimeout: Duration
        let replyGrace: Duration
    }

    private let settings: Settings
    private let responder: RpcResponder
    private let client: MessageClient
    private let logger: Logger
    private let name: String
    private let pollMilliseconds: String
    private let consumeIdPrefix: String
    /// Loop-confined state, on the client's event loop.
    private let cycle: NIOLoopBoundBox<Cycle>

    /// Creates a worker on `client`, which it owns from now on (and closes when stopped).
    init(settings: Settings, responder: RpcResponder, client: MessageClient, name: String, logger: Logger) {
        self.settings = settings
        self.responder = responder
        self.client = client
        self.name = name
        self.logger = logger
        self.pollMilliseconds = String(settings.pollTimeout.wholeMilliseconds)
        self.consumeIdPrefix = "\(name)-"
        self.cycle = NIOLoopBoundBox.makeBoxSendingValue(Cycle(), eventLoop: client.eventLoop)
    }

    private final class Cycle {
        enum Phase {
            /// Not started.
            case idle
            /// A consume is outstanding.
            case consuming
            /// A request is being answered by an `async` method.
            case answering
            /// The client is being closed (stopped, or refused by the node).
            case closing
            /// Closed.
            case finished
        }

        var phase = Phase.idle
        var stopping = false
        var consumes: UInt64 = 0
        var stopWaiters: [CheckedContinuation<Void, Never>] = []
    }

    /// Starts consuming (the client connects at the first consume).
    func start() {
        client.eventLoop.execute {
            guard case .idle = self.cycle.value.phase else { return }
            self.consume(waitMilliseconds: self.pollMilliseconds)
        }
    }

    /// Finishes the request being answered (its answer is routed and acknowledged), then closes; returns when closed.
    func stop() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            client.eventLoop.execute {
                let cycle = self.cycle.value
                if case .finished = cycle.phase { return continuation.resume() }
                cycle.stopWaiters.append(continuation)
                guard !cycle.stopping else { return }
                cycle.stopping = true
                switch cycle.phase {
                case .idle, .consuming:
                    // Parked on a consume: nothing is held (the consume acknowledged the last request), so close now;
                    // a request the node hands to this consume meanwhile goes back to the MQ when the connection closes.
                    self.close()
                case .answering, .closing, .finished:
                    break  // the answer's consume waits for nothing, and its reply closes
                }
            }
        }
    }

    // MARK: - The cycle (event loop only)

    private func consume(waitMilliseconds: String) {
        let cycle = self.cycle.value
        cycle.consumes &+= 1
        var consume = Message()
        consume.headers.reserveCapacity(5)
        consume.cmd = "consume"
        consume.mq = settings.mq
        consume.id = consumeIdPrefix + String(cycle.consumes, radix: 36)
        consume.headers.set(lowercased: HeaderName.timeout, waitMilliseconds)
        if let token = settings.token { consume.token = token }
        cycle.phase = .consuming
        // No answer within the wait limit and the grace period means a silent connection (see `consumeFailed`).
        let limit = (waitMilliseconds == "0" ? .zero : settings.pollTimeout) + settings.replyGrace
        client.send(consume, timeout: limit) { result in
            self.consumeAnswered(result)
        }
    }

    private func consumeAnswered(_ result: Result<Message, any Error>) {
        let cycle = self.cycle.value
        guard case .consuming = cycle.phase else { return }
        let reply: Message
        switch result {
        case .success(let message): reply = message
        case .failure(let error): return consumeFailed(error)
        }
        switch ConsumeReply(reply) {
        case .nothing:
            if cycle.stopping { return close() }
            consume(waitMilliseconds: pollMilliseconds)
        case .notFound:
            if cycle.stopping { return close() }
            // The MQ was removed: create it again (mode MQ|RPC), then consume.
            logger.notice("MQ-RPC queue missing; creating it again", metadata: ["mq": "\(settings.mq)"])
            recreateQueue()
            consume(waitMilliseconds: pollMilliseconds)
        case .refused(let status, let body) where status == 429 || status >= 500:
            // The node cannot take the consume now (its parked-consume limit, an MQ it cannot open yet): the same
            // consume again after a pause, not a worker stopped for good over a passing condition.
            if cycle.stopping { return close() }
            logger.warning("the node cannot take the MQ-RPC worker's consume now; retrying in 1 s", metadata: [
                "mq": "\(settings.mq)", "status": "\(status)", "reason": "\(body)",
            ])
            client.eventLoop.scheduleTask(in: .seconds(1)) {
                guard case .consuming = self.cycle.value.phase else { return }  // stopped meanwhile
                self.consume(waitMilliseconds: self.pollMilliseconds)
            }
        case .refused(let status, let body):
            logger.error("the node refuses to let the MQ-RPC worker consume; worker stopped", metadata: [
                "mq": "\(settings.mq)", "status": "\(status)", "reason": "\(body)",
            ])
            close()
        case .message(let request):
            // Stopping: handed a request by the acknowledging consume; leave it to another worker (closing gives it
            // back).
            if cycle.stopping { return close() }
            answer(request)
        }
    }

    private func consumeFailed(_ error: any Error) {
        let cycle = self.cycle.value
        if case .clientClosed? = error as? ZbusClientError { return finish() }
        if cycle.stopping { return close() }
        switch error as? ZbusClientError {
        case .timedOut?:
            // Replace the connection, so that the node redelivers whatever it handed to this one.
            logger.notice("MQ-RPC worker got no answer to its consume; reconnecting", metadata: ["worker": "\(name)"])
            client.dropConnection()
        case .connectFailed?:
            logger.notice("MQ-RPC worker cannot connect; retrying", metadata: [
                "worker": "\(name)", "broker": "\(client.address)", "error": "\(error)",
            ])
        default:
            // The connection broke: the next consume waits for the client to reconnect.
            logger.debug("MQ-RPC worker lost its connection", metadata: ["worker": "\(name)", "error": "\(error)"])
        }
        consume(waitMilliseconds: pollMilliseconds)
    }

    private func answer(_ request: Message) {
        switch responder.answer(request) {
        case .ready(let reply):
            routeAndConsume(reply, to: request)
        case .later(let makeReply):
            cycle.value.phase = .answering
            let eventLoop = client.eventLoop
            Task {
                let reply = await makeReply()
                eventLoop.execute {
                    guard case .answering = self.cycle.value.phase else { return }
                    // If the connection dropped meanwhile, the node has given the request to another worker; this
                    // answer still goes out (on the next connection) and the caller takes whichever comes first.
                    self.routeAndConsume(reply, to: request)
                }
            }
        }
    }

    /// Writes the answer (routed to the caller) and the consume that acknowledges the request, in one flush.
    private func routeAndConsume(_ reply: Message, to request: Message) {
        if let recver = request.sender {
            // A status line carries the status as zbus 6 Java services sent it: every node forwards it as is (a
            // `reply_code` header would need a node that converts it, which 6.3.0 did not).
            var route = reply
            route.cmd = "route"
            route.recver = recver
            route.id = request.id
            route.mq = request.mq ?? settings.mq
            route.ack = false
            client.post(route)
        } else {
            logger.warning("a request without sender cannot be answered", metadata: ["id": "\(request.id ?? "-")"])
        }
        // Stopping: a consume that waits for nothing only acknowledges; its answer closes the connection.
        consume(waitMilliseconds: cycle.value.stopping ? "0" : pollMilliseconds)
    }

    private func recreateQueue() {
        var create = Message()
        create.cmd = "create_mq"
        create.headers[HeaderName.mqName] = settings.mq
        create.headers[HeaderName.mqMode] = String(MqRpcService.queueMode.rawValue)
        if let token = settings.token { create.headers[HeaderName.accessToken] = token }
        if let token = settings.registerToken { create.headers[HeaderName.registerToken] = token }
        client.send(create) { result in
            guard case .success(let reply) = result, (reply.status ?? 200) != 200 else { return }
            self.logger.error("the MQ-RPC queue cannot be created again; worker stopped", metadata: [
                "mq": "\(self.settings.mq)", "status": "\(reply.status ?? 0)", "reason": "\(reply.bodyString)",
            ])
            self.close()
        }
    }

    /// Closes the client; the worker is finished once it is closed.
    private func close() {
        let cycle = self.cycle.value
        switch cycle.phase {
        case .closing, .finished: return
        case .idle, .consuming, .answering: cycle.phase = .closing
        }
        let client = self.client
        let eventLoop = client.eventLoop
        Task {
            await client.close()
            eventLoop.execute { self.finish() }
        }
    }

    private func finish() {
        let cycle = self.cycle.value
        if case .finished = cycle.phase { return }
        cycle.phase = .finished
        let waiters = cycle.stopWaiters
        cycle.stopWaiters = []
        for waiter in waiters { waiter.resume() }
    }
}

extension Duration {
    /// The duration in whole milliseconds (at least 0).
    package var wholeMilliseconds: Int64 {
        max(0, components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000)
    }
}
