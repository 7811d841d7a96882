import ZbusKernel

/// The `tracker` module's section of the node file.
struct TrackerSettings: Sendable {
    /// What the table holds at most, and when entries expire.
    var limits = TrackerTable.Limits()
    /// The longest `entry_update` body, `entry_remove` body or `server` address accepted, in bytes (`max_line_bytes`).
    var maxLineBytes = 4096

    static let keys = ["max_servers", "max_servers_per_connection", "max_entries", "max_subscribers", "max_line_bytes", "expire_after"]

    init() {}

    init(_ config: ConfigSection) throws(ConfigError) {
        limits.maxServers = try config.int("max_servers", in: 1...100_000) ?? limits.maxServers
        limits.maxServersPerConnection = try config.int("max_servers_per_connection", in: 1...100_000) ?? limits.maxServersPerConnection
        limits.maxEntries = try config.int("max_entries", in: 1...10_000_000) ?? limits.maxEntries
        limits.maxSubscribers = try config.int("max_subscribers", in: 1...1_000_000) ?? limits.maxSubscribers
        maxLineBytes = try config.byteSize("max_line_bytes", in: 256...(1 << 20)) ?? maxLineBytes
        if let expiry = try config.milliseconds("expire_after", in: 1_000...86_400_000) {
            limits.expireAfterMilliseconds = Int64(expiry)
        }
    }
}
