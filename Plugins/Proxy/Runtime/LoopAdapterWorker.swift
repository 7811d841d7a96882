import Logging
import NIOCore
import ZbusInProcess
import ZbusKernel

/// One worker of an adapter that serves an MQ of its own node (no `broker`), run entirely on one of the node's event
/// loops: its consume is an in-process session of that loop (``LoopConsumer``), its connection to the legacy service
/// is opened on the same loop (``LoopLegacyCaller``), and the answer is routed from the service's reply callback.
///
/// So a bus call costs no task, no thread hop and no lock on the adapter's side: the delivered message goes from the
/// MQ to the HTTP (or TCP) encoder, the service's reply to the producer's session, in callbacks of one loop. The
/// general runner (``ProxyAdapterRunner``'s consumer tasks) remains for contributed adapter kinds, for adapters
/// reaching a remote broker, and for `max_in_flight` below `workers`.
///
/// Semantics are the runner's: each message is acknowledged by the consume that follows its routed answer; the call
/// is limited to `timeout` (then 504), a failure becomes the same 502/400 as there; the call metrics are the same.
final class LoopAdapterWorker: @unchecked Sendable {
    private let consumer: LoopConsumer
    private let caller: any LoopLegacyCaller
    private let settings: ProxyAdapterSettings
    /// `settings.queueTimeout`, as the event loop counts time (converted once, not for every request).
    private let queueTimeout: TimeAmount
    private let address: String
    private let metrics: ProxyCallMetrics
    /// The adapter's failed calls, shared by its workers (``CallFailureLog``).
    private let failures: CallFailureLog
    private let logger: Logger

    /// Opens the worker's session on `node` (on the loop the node picks) and its caller on that loop.
    init(node: Node, adapter: any LoopProxyAdapter, settings: ProxyAdapterSettings, metrics: ProxyCallMetrics,
         failures: CallFailureLog, logger: Logger) throws(InProcessConnectionError) {
        consumer = try LoopConsumer(
            node: node, mq: settings.mq,
            // The delivered form: the request's ids are reserved headers the service never sees, and the answer is
            // routed by `rawid`, so the consumer need not rebuild each message's headers to present it.
            options: LoopConsumer.Options(token: settings.token, autoCreate: [.mq, .rpc], pollTimeout: .seconds(10),
                                          keepsDeliveredForm: true),
            logger: logger)
        caller = adapter.makeLoopCaller(on: consumer.eventLoop, timeout: settings.timeout)
        self.settings = settings
        queueTimeout = settings.queueTimeout.nioTimeAmount
        self.address = adapter.address
        self.metrics = metrics
        self.failures = failures
        self.logger = logger
    }

    /// Starts consuming.
    func start() {
        consumer.start { [self] request in handle(request) }
    }

    /// Stops after the call in progress is answered and acknowledged, then closes the legacy connection.
    func stop() -> EventLoopFuture<Void> {
        let caller = self.caller
        return consumer.stop().map { caller.shutdown() }
    }

    private func handle(_ request: Message) {
        let start = NIODeadline.now()
        // A request that waited for a worker past `queue_timeout` (counted from when the MQ accepted it) is answered
        // at once and not sent: its caller has waited long enough. Without this, a caller queued behind k rounds of
        // calls to a stuck service heard its 504 after k + 1 timeouts, and every one of those requests still reached
        // the service.
        if let accepted = request.acceptedAt,
           let expired = expiredReply(waited: start - accepted, limit: queueTimeout, id: request.rawId, settings: settings,
                                      metrics: metrics, failures: failures, logger: logger) {
            return consumer.finish(expired, routing: request)
        }
        caller.call(request) { [self] result in
            let reply: Message
            switch consume result {
            case .success(let answer):
                reply = answer
            case .failure(let error):
                reply = failedCallReply(error, id: request.rawId, service: settings.name, failures: failures, logger: logger)
            }
            metrics.callAnswered(status: reply.status ?? 200, afterNanoseconds: (NIODeadline.now() - start).nanoseconds)
            // Moved, not copied: `finish` adds the caller's `id` and `mq`, which a shared reply would copy it for.
            consumer.finish(consume reply, routing: request)
        }
    }
}
