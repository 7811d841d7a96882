import Logging
import NIOCore
import ZbusInProcess
import ZbusKernel
import ZbusRPC

/// One MQ-RPC worker of a service on this node's own MQ, run on one of the node's event loops (``LoopConsumer``): a
/// synchronous method is answered in the callback that delivers the request, and its answer is routed and the next
/// consume dispatched in the same turn of the loop, with no task, thread hop or message copy through a client.
///
/// The cycle and its guarantees are ``MqRpcWorker``'s (its TCP counterpart, for services on another node): the
/// consume after an answer acknowledges the request; an `async` method runs as a task and the loop routes its answer
/// when it is done; ``stop()`` finishes the request in hand, acknowledges it and closes.
///
/// With a `queue_timeout`, a request that waited in the MQ longer than that for a worker (counted from when the MQ
/// accepted it, ``Message/acceptedAt``) is answered at once with an error and not run: its caller has most likely
/// given up, and running it would only lengthen the wait of those behind it.
final class LoopRpcWorker: Sendable {
    private let consumer: LoopConsumer
    private let responder: RpcResponder
    private let expiry: Expiry?

    /// What the worker needs to refuse a request that waited too long.
    struct Expiry: Sendable {
        let service: String
        let mq: String
        let limit: Duration
        let logger: Logger
        /// Shared by the service's workers: a backlog refused at the rate it drains logs a warning a minute, not one
        /// per request.
        let failures = CallFailureLog()
    }

    /// Opens the worker's session on `node`, on the loop the node picks.
    init(node: Node, mq: String, responder: RpcResponder, options: LoopConsumer.Options, expiry: Expiry?,
         logger: Logger) throws(InProcessConnectionError) {
        consumer = try LoopConsumer(node: node, mq: mq, options: options, logger: logger)
        self.responder = responder
        self.expiry = expiry
    }

    /// Starts consuming.
    func start() {
        let consumer = self.consumer
        let responder = self.responder
        let expiry = self.expiry
        consumer.start { request in
            if let expiry, let refusal = Self.refusal(of: request, expiry: expiry, responder: responder) {
                return consumer.finish(refusal, routing: request)
            }
            switch responder.answer(request) {
            case .ready(let reply):
                consumer.finish(reply, routing: request)
            case .later(let makeReply):
                let eventLoop = consumer.eventLoop
                Task {
                    let reply = await makeReply()
                    eventLoop.execute { consumer.finish(reply, routing: request) }
                }
            }
        }
    }

    /// The error answer to `request` when it waited past the limit, else `nil`.
    private static func refusal(of request: Message, expiry: Expiry, responder: RpcResponder) -> Message? {
        guard let accepted = request.acceptedAt else { return nil }
        let waited = Duration.nanoseconds((NIODeadline.now() - accepted).nanoseconds)
        guard waited >= expiry.limit else { return nil }
        let reason = "MQ-RPC service '\(expiry.service)' did not run this request: it waited \(waited.wholeMilliseconds) ms in MQ "
            + "'\(expiry.mq)' for a worker, past the service's queue_timeout of \(expiry.limit.wholeMilliseconds) ms "
            + "(the service is slower than its load: more workers, or a faster method)"
        expiry.failures.failed("request waited past queue_timeout for a worker; not run", kind: "expired in queue", metadata: [
            "id": "\(request.id ?? "-")", "error": "\(reason)",
        ], logger: expiry.logger)
        return responder.refusal(of: request, reason: reason)
    }

    /// Finishes the request in hand (answered and acknowledged), then closes.
    func stop() async {
        try? await consumer.stop().get()
    }
}
