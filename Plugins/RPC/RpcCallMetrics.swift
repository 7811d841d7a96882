import CoreMetrics
import ZbusRPC

/// Counts one hosted service's calls and their latency (label `service`), through the node's metrics factory:
/// `zbus_rpc_calls_total{service, outcome="ok"|"error"|"expired"}` (expired: answered with an error unrun, after
/// waiting in the MQ past `queue_timeout`; no duration) and the histogram `zbus_rpc_call_duration_seconds{service}`.
struct RpcCallMetrics: RpcCallObserver {
    private let succeeded: Counter
    private let failed: Counter
    private let expired: Counter
    private let duration: Timer

    init(service: String, factory: any MetricsFactory) {
        succeeded = Counter(label: "zbus_rpc_calls_total", dimensions: [("service", service), ("outcome", "ok")], factory: factory)
        failed = Counter(label: "zbus_rpc_calls_total", dimensions: [("service", service), ("outcome", "error")], factory: factory)
        expired = Counter(label: "zbus_rpc_calls_total", dimensions: [("service", service), ("outcome", "expired")], factory: factory)
        duration = Timer(label: "zbus_rpc_call_duration_seconds", dimensions: [("service", service)], factory: factory)
    }

    func callAnswered(status: Int, after duration: Duration) {
        (status < 400 ? succeeded : failed).increment()
        self.duration.recordInterval(duration)
    }

    func callExpired() {
        expired.increment()
    }
}

extension Timer {
    /// Records `duration` in nanoseconds.
    func recordInterval(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        recordNanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
