import Atomics
import CoreMetrics
import Logging
import NIOConcurrencyHelpers
import NIOCore
import ServiceLifecycle
import ZbusClient
import ZbusKernel
import ZbusProxy

/// Runs one adapter: consumes its MQ with `workers` connections, calls the legacy service with a timeout and at most
/// `max_in_flight` calls at once, and routes each answer (or a clear 5xx) back to the caller.
///
/// The consumer acknowledges a request only after its answer has been routed (its next consume does), so a proxy that
/// dies mid-call leaves the request to be redelivered to another proxy of the same MQ.
///
/// A ServiceLifecycle service: ``run()`` consumes until graceful shutdown, then stops.
public final class ProxyAdapterRunner: Service {
    /// The entry's runtime settings.
    public let settings: ProxyAdapterSettings
    /// The adapter.
    public let adapter: any ProxyAdapter
    private let consumer: Consumer
    private let limiter: InFlightLimiter
    private let logger: Logger
    private let finished = NIOLockedValueBox(false)
    private let metrics: ProxyCallMetrics
    /// Failed calls of every worker, logged without flooding (a service down under load fails every call).
    private let failures = CallFailureLog()
    /// The node whose MQ the adapter serves, when it is this process's node and the adapter can run on its loops.
    private let loopNode: Node?
    /// The loop workers running (see ``LoopAdapterWorker``).
    private let loopWorkers = NIOLockedValueBox<[LoopAdapterWorker]>([])

    /// Creates a runner of `adapter` on `broker` (nothing starts before ``run()``).
    ///
    /// - Parameters:
    ///   - metricsFactory: where its calls are counted (the node's, ``NodeContext/metricsFactory``).
    ///   - localNode: the node `broker` reaches in-process, if it does: a built-in adapter kind then runs its workers
    ///     on that node's event loops (``LoopAdapterWorker``), as long as `max_in_flight` does not hold the workers
    ///     back (`max_in_flight` ≥ `workers`, so each worker's one call in flight is always allowed).
    public init(settings: ProxyAdapterSettings, adapter: any ProxyAdapter, broker: any Broker, logger: Logger,
                metricsFactory: any MetricsFactory = NOOPMetricsHandler.instance, localNode: Node? = nil) {
        self.loopNode = adapter is any LoopProxyAdapter && settings.maxInFlight >= settings.workers ? localNode : nil
        self.settings = settings
        self.metrics = ProxyCallMetrics(adapter: settings.name, factory: metricsFactory)
        self.adapter = adapter
        var logger = logger
        logger[metadataKey: "adapter"] = "\(settings.name)"
        logger[metadataKey: "mq"] = "\(settings.mq)"
        self.logger = logger
        limiter = InFlightLimiter(limit: settings.maxInFlight)
        consumer = Consumer(
            broker: broker, mq: settings.mq,
            options: Consumer.Options(token: settings.token, autoCreate: [.mq, .rpc], pollTimeout: .seconds(10)),
            logger: logger)
    }

    /// Consumes the MQ, retrying connection failures, until graceful shutdown (or cancellation); then stops: answers
    /// in progress are routed first, the last answered request is acknowledged, the adapter is shut down.
    public func run() async {
        let consumer = self.consumer
        let workers = settings.workers
        logger.info("proxy adapter consuming", metadata: ["kind": "\(settings.kind)", "workers": "\(workers)"])
        if let loopNode, let adapter = adapter as? any LoopProxyAdapter {
            return await runOnLoops(of: loopNode, adapter: adapter)
        }
        if let adapter = adapter as? any LoopProxyAdapter, adapter.pipelineDepth > 1 {
            logger.warning("pipeline is ignored: it applies to adapters serving their own node's MQ with max_in_flight >= workers; this one calls from tasks, one request per connection", metadata: [
                "pipeline": "\(adapter.pipelineDepth)", "workers": "\(workers)", "max_in_flight": "\(settings.maxInFlight)",
            ])
        }
        // A refusal (a wrong MQ token) repeats every second until someone fixes it: logged at error once, then at
        // debug (and once a minute), and at notice when a message comes again.
        let failures = NIOLockedValueBox(RepeatedFailureLog())
        // Read by every handler call: an atomic load, not the lock.
        let failing = ManagedAtomic(false)
        let logger = self.logger
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                try await cancelWhenGracefulShutdown {
                    try await consumer.start(concurrency: workers) { message, consumer in
                        if failing.load(ordering: .relaxed), failing.exchange(false, ordering: .relaxed) {
                            failures.withLockedValue { _ = $0.succeeded("proxy adapter consuming again", logger: logger) }
                        }
                        // Awaited at once but not cancelled with the consumers: a call in progress when the node
                        // stops still gets its answer (bounded by `timeout`) routed before the consumer acknowledges it.
                        try await Task {
                            let reply = await self.answer(message)
                            try await consumer.route(reply, to: message)
                        }.value
                    }
                }
                break
            } catch {
                guard !Task.isShuttingDownGracefully && !Task.isCancelled else { break }
                failures.withLockedValue { _ = $0.failed("proxy adapter cannot consume; retrying in 1 s", reason: "\(error)", logger: logger) }
                failing.store(true, ordering: .relaxed)
                do { try await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(1)) } } catch { break }
            }
        }
        await stop()
    }

    /// ``run()`` with loop workers: they consume and call on the node's loops until graceful shutdown (or
    /// cancellation), then each finishes its call in progress (routed and acknowledged) and closes.
    private func runOnLoops(of node: Node, adapter: any LoopProxyAdapter) async {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            var workers: [LoopAdapterWorker] = []
            do {
                for _ in 0..<settings.workers {
                    workers.append(try LoopAdapterWorker(node: node, adapter: adapter, settings: settings, metrics: metrics,
                                                     failures: failures, logger: logger))
                }
                loopWorkers.withLockedValue { $0 = workers }
                for worker in workers { worker.start() }
                break
            } catch {
                // The workers made before the failure hold sessions of the node: closed now (not awaited: their loops
                // may be going down with the node), rather than left open at every retry.
                for worker in workers { _ = worker.stop() }
                // The node is not serving yet (or any more): try again shortly, unless it is stopping.
                logger.error("proxy adapter cannot consume; retrying in 1 s", metadata: ["error": "\(error)"])
                do { try await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(1)) } } catch { break }
            }
        }
        try? await gracefulShutdown()
        await stop()
    }

    /// Calls the legacy service for `request` and returns what to route back: its answer, or a 502/503/504/400 whose
    /// body says what failed. Never throws.
    ///
    /// Two limits bound a caller's wait. `queue_timeout` bounds the wait before the call, counted from when the MQ
    /// accepted the request (``Message/acceptedAt``, on requests delivered in-process; else from now): for a worker
    /// (504 at once, the request never sent, when it waited all of it) and then for one of the `max_in_flight` slots
    /// (503, the request never sent). `timeout` then bounds the call (504). A request the service cannot take is
    /// refused within `queue_timeout` rather than queued behind calls that are stuck, and a request that is sent
    /// gets the whole `timeout`.
    public func answer(_ request: Message) async -> Message {
        let start = ContinuousClock.now
        var queueBudget = settings.queueTimeout
        if let accepted = request.acceptedAt {
            let waited = NIODeadline.now() - accepted
            if let expired = expiredReply(waited: waited, limit: settings.queueTimeout.nioTimeAmount, id: request.id,
                                          settings: settings, metrics: metrics, failures: failures, logger: logger) {
                return expired
            }
            queueBudget -= .nanoseconds(waited.nanoseconds)
        }
        let reply = await answerUnmeasured(request, slotDeadline: start + queueBudget)
        metrics.callAnswered(status: reply.status ?? 200, after: ContinuousClock.now - start)
        return reply
    }

    private func answerUnmeasured(_ request: Message, slotDeadline: ContinuousClock.Instant) async -> Message {
        let adapter = self.adapter
        let timeout = settings.timeout
        let name = settings.name
        enum Outcome: Sendable {
            case reply(Message)
            case failed(any Error)
            case timedOut
            case saturated
        }
        let outcome: Outcome
        do {
            outcome = try await limiter.withSlot(deadline: slotDeadline) {
                if let timed = adapter as? any TimedProxyAdapter {
                    do { return .reply(try await timed.call(request, timeout: timeout)) } catch { return .failed(error) }
                }
                return await withTaskGroup(of: Outcome?.self) { group in
                    group.addTask {
                        do { return .reply(try await adapter.call(request)) } catch is CancellationError { return nil } catch { return .failed(error) }
                    }
                    group.addTask {
                        do { try await Task.sleep(for: timeout) } catch { return nil }
                        return .timedOut
                    }
                    var result: Outcome = .failed(CancellationError())
                    while let next = await group.next() {
                        if let next {
                            result = next
                            break
                        }
                    }
                    group.cancelAll()
                    return result
                }
            }
        } catch is InFlightLimiter.Saturated {
            outcome = .saturated
        } catch {
            outcome = .failed(error)  // cancelled while waiting for a slot: the node is stopping
        }
        switch outcome {
        case .reply(let reply):
            return reply
        case .timedOut:
            return failedCallReply(ProxyError.timedOut(service: name, address: adapterAddress, after: timeout), id: request.id,
                                   service: name, failures: failures, logger: logger)
        case .saturated:
            let error = ProxyError.saturated(service: name, address: adapterAddress, limit: limiter.limit, after: settings.queueTimeout)
            return failedCallReply(error, id: request.id, service: name, failures: failures, logger: logger)
        case .failed(let error):
            return failedCallReply(error, id: request.id, service: name, failures: failures, logger: logger)
        }
    }

    private var adapterAddress: String {
        (adapter as? any DescribedProxyAdapter)?.address ?? "its target"
    }

    /// Closes the consumer (acknowledging the last answered request) and shuts the adapter down, once: ``run()`` ends
    /// with it, and the module calls it for a runner that never ran.
    public func stop() async {
        let first = finished.withLockedValue { finished in
            defer { finished = true }
            return !finished
        }
        guard first else { return }
        let workers = loopWorkers.withLockedValue { workers in
            defer { workers = [] }
            return workers
        }
        for worker in workers { try? await worker.stop().get() }
        await consumer.close()
        await adapter.shutdown()
    }
}

/// An adapter that can name where its service lives (for timeout messages).
protocol DescribedProxyAdapter: ProxyAdapter {
    var address: String { get }
}

/// A built-in adapter that enforces the timeout itself, with a timer on its connection's event loop (cheaper than the
/// runtime's race of the call against a sleeping task, which contributed kinds get).
protocol TimedProxyAdapter: DescribedProxyAdapter {
    func call(_ request: Message, timeout: Duration) async throws -> Message
}

/// The 504 for a request that waited `waited` for a worker, past the adapter's `queue_timeout` (`limit`, as the event
/// loop counts time: converting the setting costs more than the rest of the check), logged and counted (`id`: the
/// producer's); `nil` while the request may still be sent. Both runners decide with it.
func expiredReply(waited: TimeAmount, limit: TimeAmount, id: String?, settings: ProxyAdapterSettings, metrics: ProxyCallMetrics,
                  failures: CallFailureLog, logger: Logger) -> Message? {
    guard waited >= limit else { return nil }
    let error = ProxyError.expiredInQueue(service: settings.name, mq: settings.mq, waited: .nanoseconds(waited.nanoseconds),
                                          limit: settings.queueTimeout)
    failures.failed("request waited past queue_timeout for a worker; not sent", kind: error.kind,
                    metadata: ["id": "\(id ?? "-")", "error": "\(error)"], logger: logger)
    metrics.requestExpired()
    return error.reply
}

/// The reply routed back for a legacy call that failed with `error` (`id`: the producer's), logged through `failures`:
/// a ``ProxyError``'s own reply, else a 502 that names the service and the error. Both runners answer with it.
func failedCallReply(_ error: any Error, id: String?, service: String, failures: CallFailureLog, logger: Logger) -> Message {
    let metadata: Logger.Metadata = ["id": "\(id ?? "-")", "error": "\(error)"]
    guard let proxyError = error as? ProxyError else {
        // Kinds stay few: one per error type a contributed adapter throws.
        failures.failed("legacy call failed", kind: "failed: \(type(of: error))", metadata: metadata, logger: logger)
        var reply = Message(status: 502)
        reply.setBody("legacy service '\(service)' failed: \(error)")
        return reply
    }
    let message = switch proxyError {
    case .timedOut: "legacy call timed out"
    case .saturated: "legacy service saturated; request refused"
    default: "legacy call failed"
    }
    failures.failed(message, kind: proxyError.kind, metadata: metadata, logger: logger)
    return proxyError.reply
}

/// Counts one adapter's legacy calls and their latency (label `adapter`): `zbus_proxy_calls_total{adapter,
/// outcome="ok"|"error"|"expired"}` (a 502, 504 or 400 of the proxy, or any 4xx/5xx of the service, is an error;
/// a request answered 504 unsent because it waited for a worker past `queue_timeout` is expired, and has no
/// duration) and the histogram `zbus_proxy_call_duration_seconds{adapter}`.
struct ProxyCallMetrics: Sendable {
    private let succeeded: CoreMetrics.Counter
    private let failed: CoreMetrics.Counter
    private let expired: CoreMetrics.Counter
    private let duration: CoreMetrics.Timer

    init(adapter: String, factory: any MetricsFactory) {
        succeeded = CoreMetrics.Counter(label: "zbus_proxy_calls_total", dimensions: [("adapter", adapter), ("outcome", "ok")], factory: factory)
        failed = CoreMetrics.Counter(label: "zbus_proxy_calls_total", dimensions: [("adapter", adapter), ("outcome", "error")], factory: factory)
        expired = CoreMetrics.Counter(label: "zbus_proxy_calls_total", dimensions: [("adapter", adapter), ("outcome", "expired")], factory: factory)
        duration = CoreMetrics.Timer(label: "zbus_proxy_call_duration_seconds", dimensions: [("adapter", adapter)], factory: factory)
    }

    func callAnswered(status: Int, after elapsed: Duration) {
        let (seconds, attoseconds) = elapsed.components
        callAnswered(status: status, afterNanoseconds: seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }

    /// ``callAnswered(status:after:)`` with the time in nanoseconds, as the event loop counts it: taking a `Duration`
    /// apart costs about 190 instructions, a good part of a loop worker's own work per call.
    func callAnswered(status: Int, afterNanoseconds nanoseconds: Int64) {
        (status < 400 ? succeeded : failed).increment()
        duration.recordNanoseconds(nanoseconds)
    }

    /// A request waited for a worker past the adapter's `queue_timeout` and was answered without a call.
    func requestExpired() {
        expired.increment()
    }
}
