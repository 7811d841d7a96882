import ZbusKernel

/// The `monitor` module's section of the node file.
///
/// ```yaml
///   - module: monitor
///     history: 5m        # how far back the page's rate charts reach (1m ... 1h)
///     drain: 0s          # on a graceful stop, how long /health answers 503 before the node goes on stopping
/// ```
struct MonitorSettings: Sendable {
    /// Seconds of rate history kept per MQ (one sample a second).
    var historySeconds = 300
    /// How long a graceful stop waits with `/health` at 503 before the node stops serving, so that load balancers
    /// take the node out first.
    var drain: Duration = .zero

    static let keys = ["history", "drain"]

    init() {}

    init(_ config: ConfigSection) throws(ConfigError) {
        if let history = try config.milliseconds("history", in: 60_000...3_600_000) { historySeconds = history / 1000 }
        if let drain = try config.milliseconds("drain", in: 0...600_000) { self.drain = .milliseconds(drain) }
    }
}
