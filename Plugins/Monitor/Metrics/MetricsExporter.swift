import CoreMetrics
import NIOConcurrencyHelpers
import Prometheus
import ZbusKernel

/// The node's metrics in the Prometheus text format, through swift-metrics and swift-prometheus.
///
/// Modules record their own metrics through ``factory`` as things happen (RPC and proxy calls, store syncs). The MQs'
/// counts are not recorded per message: each MQ keeps plain counters on its own state, and a scrape reads them
/// (``QueueStatisticsSource``) and brings the metrics here up to date before writing them out, so the produce and
/// consume paths pay nothing for `/metrics`.
final class MetricsExporter: Sendable {
    /// Every metric of the node; `/metrics` writes it out.
    let registry: PrometheusCollectorRegistry
    /// The factory modules record through (``ExtensionPoint/metricsFactory``).
    let factory: PrometheusMetricsFactory

    private let scrape = NIOLockedValueBox(ScrapeState())

    /// The metrics of the MQs seen at the last scrape, by MQ name, with the counts they last reported.
    private struct ScrapeState {
        var queues: [String: QueueMetrics] = [:]
        var node: NodeMetrics?
    }

    init() {
        registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        // Syncs take from tens of microseconds (page cache on fast disks) to a second (a busy spinning disk).
        factory.durationHistogramBuckets[MetricNames.fsyncDuration] = [
            .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2),
            .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
            .milliseconds(250), .milliseconds(500), .seconds(1),
        ]
        self.factory = factory
    }

    /// Brings the MQ and node metrics up to date with `statistics` and the node's counts, then writes everything out.
    func exposition(statistics: [QueueStatistics], connections: Int, traffic: SessionTraffic, storeBytes: Int64,
                    uptimeSeconds: Double) -> String {
        let factory = self.factory
        scrape.withLockedValue { state in
            var seen: Set<String> = []
            for queue in statistics {
                seen.insert(queue.name)
                if let metrics = state.queues[queue.name], metrics.update(queue) { continue }
                // New, or its counters went back (removed and created again): start its series over.
                state.queues[queue.name]?.destroy()
                let metrics = QueueMetrics(mq: queue.name, factory: factory)
                _ = metrics.update(queue)
                state.queues[queue.name] = metrics
            }
            for (name, metrics) in state.queues where !seen.contains(name) {
                metrics.destroy()
                state.queues[name] = nil
            }
            let node = state.node ?? NodeMetrics(factory: factory)
            state.node = node
            node.connections.record(connections)
            node.storeBytes.record(storeBytes)
            node.uptime.record(uptimeSeconds)
            node.queues.record(statistics.count)
            node.update(traffic)
        }
        return registry.emitToString()
    }
}

/// The metric names of the node, in one place (docs/monitor.md lists them).
enum MetricNames {
    static let produced = "zbus_mq_produced_messages_total"
    static let consumed = "zbus_mq_consumed_messages_total"
    static let redelivered = "zbus_mq_redelivered_messages_total"
    static let depth = "zbus_mq_depth"
    static let consumers = "zbus_mq_consumers"
    static let inFlight = "zbus_mq_in_flight"
    static let connections = "zbus_node_connections"
    static let storeBytes = "zbus_node_store_bytes"
    static let uptime = "zbus_node_uptime_seconds"
    static let queues = "zbus_node_mqs"
    static let received = "zbus_node_received_bytes_total"
    static let sent = "zbus_node_sent_bytes_total"
    static let fsyncDuration = "zbus_store_fsync_duration_seconds"
}

/// The metrics of one MQ (label `mq`).
final class QueueMetrics: @unchecked Sendable {
    // Guarded by the exporter's lock.
    private let produced: CoreMetrics.Counter
    private let consumed: CoreMetrics.Counter
    private let redelivered: CoreMetrics.Counter
    /// Made when the MQ is first seen open: the depth of an MQ of the store not opened since the start is not known
    /// (its backlog is on disk), and a 0 would tell an alert that nothing waits.
    private var depth: CoreMetrics.Gauge?
    private let consumers: CoreMetrics.Gauge
    private let inFlight: CoreMetrics.Gauge
    private var last: (produced: UInt64, consumed: UInt64, redelivered: UInt64) = (0, 0, 0)
    private let labels: [(String, String)]
    private let factory: any MetricsFactory

    init(mq: String, factory: any MetricsFactory) {
        let labels = [("mq", mq)]
        self.labels = labels
        self.factory = factory
        produced = CoreMetrics.Counter(label: MetricNames.produced, dimensions: labels, factory: factory)
        consumed = CoreMetrics.Counter(label: MetricNames.consumed, dimensions: labels, factory: factory)
        redelivered = CoreMetrics.Counter(label: MetricNames.redelivered, dimensions: labels, factory: factory)
        consumers = CoreMetrics.Gauge(label: MetricNames.consumers, dimensions: labels, factory: factory)
        inFlight = CoreMetrics.Gauge(label: MetricNames.inFlight, dimensions: labels, factory: factory)
    }

    /// Moves the counters by what the MQ counted since the last scrape and sets the gauges; false (and nothing
    /// changed) when a counter went back, which only an MQ removed and created again does.
    func update(_ queue: QueueStatistics) -> Bool {
        guard queue.produced >= last.produced, queue.consumed >= last.consumed, queue.redelivered >= last.redelivered else {
            return false
        }
        if queue.produced > last.produced { produced.increment(by: queue.produced - last.produced) }
        if queue.consumed > last.consumed { consumed.increment(by: queue.consumed - last.consumed) }
        if queue.redelivered > last.redelivered { redelivered.increment(by: queue.redelivered - last.redelivered) }
        last = (queue.produced, queue.consumed, queue.redelivered)
        if queue.isOpen {
            if depth == nil { depth = CoreMetrics.Gauge(label: MetricNames.depth, dimensions: labels, factory: factory) }
            depth?.record(queue.depth)
        }
        consumers.record(queue.consumers)
        inFlight.record(queue.inFlight)
        return true
    }

    func destroy() {
        produced.destroy()
        consumed.destroy()
        redelivered.destroy()
        depth?.destroy()
        consumers.destroy()
        inFlight.destroy()
    }
}

/// The node-wide metrics set at each scrape.
final class NodeMetrics: @unchecked Sendable {
    let connections: CoreMetrics.Gauge
    let storeBytes: CoreMetrics.Gauge
    let uptime: CoreMetrics.Gauge
    let queues: CoreMetrics.Gauge
    private let received: CoreMetrics.Counter
    private let sent: CoreMetrics.Counter
    /// The traffic counted so far (guarded by the exporter's lock).
    private var counted = SessionTraffic()

    /// Moves the byte counters up to `traffic`; a reading below the last (an open connection's counts that could not
    /// be read) moves nothing.
    func update(_ traffic: SessionTraffic) {
        if traffic.read > counted.read {
            received.increment(by: traffic.read - counted.read)
            counted.read = traffic.read
        }
        if traffic.written > counted.written {
            sent.increment(by: traffic.written - counted.written)
            counted.written = traffic.written
        }
    }

    init(factory: any MetricsFactory) {
        received = CoreMetrics.Counter(label: MetricNames.received, factory: factory)
        sent = CoreMetrics.Counter(label: MetricNames.sent, factory: factory)
        connections = CoreMetrics.Gauge(label: MetricNames.connections, factory: factory)
        storeBytes = CoreMetrics.Gauge(label: MetricNames.storeBytes, factory: factory)
        uptime = CoreMetrics.Gauge(label: MetricNames.uptime, factory: factory)
        queues = CoreMetrics.Gauge(label: MetricNames.queues, factory: factory)
    }
}
