import CoreMetrics

extension ExtensionPoint where Value == any MetricsFactory {
    /// Where modules record their metrics (RPC calls, proxy calls, store syncs): the factory of the module that serves
    /// them (the `monitor` module's, which `/metrics` reads). Without such a module, metrics are dropped.
    public static var metricsFactory: ExtensionPoint {
        .exclusive("monitor.metrics-factory", noun: "the metrics factory (where modules record metrics)", verb: "provides")
    }
}

extension NodeContext {
    /// The factory to create metrics with (`Timer(label:dimensions:factory:)`): the one a module contributed to
    /// ``ExtensionPoint/metricsFactory``, or one that drops everything when no module serves metrics.
    public var metricsFactory: any MetricsFactory {
        contributions.value(of: .metricsFactory) ?? NOOPMetricsHandler.instance
    }
}
