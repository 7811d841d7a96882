import Logging
import Prometheus
import ServiceLifecycle
import ZbusKernel

/// The `monitor` module: a web page of the node at `/`, Prometheus metrics at `/metrics` and a health check at
/// `/health`, on the node's own port.
///
/// ```yaml
/// modules:
///   - module: mq
///   - module: monitor
///     history: 5m      # rate charts reach this far back
///     drain: 0s        # on a graceful stop, /health answers 503 this long before the node stops serving
/// ```
///
/// The page and its script are compiled in (it works offline); it reads `/monitor/api/overview` once a second.
/// Other modules add tables to it (``ExtensionPoint/monitorPanels``) and record metrics through the factory it
/// provides (``ExtensionPoint/metricsFactory``); the MQs come from ``ExtensionPoint/queueStatistics``.
public final class MonitorModule: PluginModule {
    public static let name = "monitor"
    public static let summary = "Web monitor page at /, Prometheus metrics at /metrics, health check at /health."
    public static let configKeys = MonitorSettings.keys

    private let settings: MonitorSettings
    private let state: MonitorState
    private let exporter: MetricsExporter
    private let logger: Logger
    private let policy: AccessPolicy?

    public init(setup: ModuleSetup) throws(ConfigError) {
        settings = try MonitorSettings(setup.config)
        logger = setup.logger
        policy = setup.node.auth
        exporter = MetricsExporter()
        state = MonitorState(historySeconds: settings.historySeconds)
    }

    public func contribute(to contributions: inout ModuleContributions) {
        let state = self.state
        let exporter = self.exporter
        let policy = self.policy
        for (path, handler) in MonitorEndpoints.handlers(state: state, exporter: exporter, policy: policy) {
            contributions.add(handler, named: path, to: .httpPaths)
        }
        contributions.add(exporter.factory, to: .metricsFactory)
    }

    public func start(_ context: NodeContext) async throws {
        state.attach(MonitorState.Node(
            name: context.config.name, address: context.serverAddress, sessions: context.sessions,
            modules: context.moduleNames, queues: context.contributions.value(of: .queueStatistics),
            panels: context.contributions.values(of: .monitorPanels)))
        await state.sample()
    }

    /// Samples once a second (rates history, store size, panels) until a graceful stop, which turns `/health` to
    /// 503 at once and then waits `drain` before letting the node go on stopping.
    public func run() async throws {
        let state = self.state
        await withGracefulShutdownHandler {
            while !state.isStopping, !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                guard !state.isStopping else { break }
                await state.sample()
            }
        } onGracefulShutdown: {
            state.markStopping()
        }
        state.markStopping()
        if settings.drain > .zero {
            logger.info("draining: /health answers 503", metadata: ["drain": "\(settings.drain)"])
            try? await Task.sleep(for: settings.drain)
        }
    }
}
