import ZbusKernel
import ZbusStore

/// The `mq` module's section of the node file.
struct MQSettings: Sendable {
    /// When the store syncs to disk.
    var fsync: FsyncPolicy = .interval(milliseconds: 100)
    /// Segment file size.
    var segmentBytes: Int = 64 << 20
    /// The token `create_mq`, `remove_mq`, `add_key` and `remove_key` must present (`register_token` header).
    var registerToken: String = ""
    /// Whether `route` must come from a connection that consumed from an MQ the receiver produced to (`route_check:
    /// consumer`, the default), or may come from anyone as in zbus 6.3 (`off`: for old clients that answer on another
    /// connection than they consume on; see docs/security.md).
    var routeCheck = true
    /// Default maximum backlog of a new MQ (0: unbounded); `create_mq` may set its own with `max_length`.
    var maxLength: Int64 = 0
    /// Messages a slow pub/sub subscriber may have waiting before the oldest are dropped.
    var subscriberBuffer: Int = 10_000
    /// Dedupe keys kept per key group before the oldest is forgotten.
    var keyLimit: Int = 1_000_000

    // MQ table limits (issue 16).
    /// MQs the node holds at most: `create_mq` beyond it gets 503 naming `mq.max_mqs`. A store that already holds
    /// more is still served whole.
    var maxMqs: Int = 10_000
    /// Master links in the longest chain (a slave of a slave of ...): every link nests one more copy of each
    /// message produced at the top; `create_mq` that would exceed it gets 400.
    var maxMasterDepth: Int = 16
    static let tableKeys = ["max_mqs", "max_master_depth"]

    // Limits of the MQ delivery core (issue 16): what one MQ holds for any client, whoever asks.
    /// Key groups one MQ keeps; a key in a new group beyond them is refused (429).
    var maxKeyGroups: Int = 10_000
    /// Dedupe keys one MQ keeps in all its groups before the oldest is forgotten.
    var maxKeys: Int = 1_000_000
    /// Bytes a slow pub/sub subscriber may have waiting before the oldest messages are dropped.
    var subscriberBufferBytes: Int = 64 << 20
    /// Consumes one MQ keeps parked (waiting for a message) at once; beyond them a consume is refused (429).
    var maxParkedConsumes: Int = 100_000
    /// Bytes the dedupe keys of all MQs hold together; a key beyond them is refused (429).
    var maxKeyBytes: Int = 256 << 20

    static let coreKeys = ["max_key_groups", "max_keys", "subscriber_buffer_bytes", "max_parked_consumes", "max_key_bytes"]

    static let keys = ["fsync", "fsync_interval", "segment_size", "register_token", "route_check", "max_length", "subscriber_buffer", "key_limit"]
        + tableKeys + coreKeys

    init() {}

    init(_ config: ConfigSection) throws(ConfigError) {
        let interval = try config.milliseconds("fsync_interval", in: 1...60_000) ?? 100
        switch try config.choice("fsync", allowed: ["none", "interval", "always"]) ?? "interval" {
        case "none": fsync = .none
        case "always": fsync = .always
        default: fsync = .interval(milliseconds: interval)
        }
        segmentBytes = try config.byteSize("segment_size", in: (1 << 16)...(1 << 30)) ?? segmentBytes
        registerToken = try config.string("register_token") ?? registerToken
        routeCheck = try config.choice("route_check", allowed: ["consumer", "off"]).map { $0 == "consumer" } ?? routeCheck
        maxLength = Int64(try config.int("max_length", in: 0...Int.max) ?? 0)
        subscriberBuffer = try config.int("subscriber_buffer", in: 1...10_000_000) ?? subscriberBuffer
        keyLimit = try config.int("key_limit", in: 1...100_000_000) ?? keyLimit
        maxMqs = try config.int("max_mqs", in: 1...10_000_000) ?? maxMqs
        maxMasterDepth = try config.int("max_master_depth", in: 1...1_000) ?? maxMasterDepth
        maxKeyGroups = try config.int("max_key_groups", in: 1...10_000_000) ?? maxKeyGroups
        maxKeys = try config.int("max_keys", in: 1...100_000_000) ?? maxKeys
        subscriberBufferBytes = try config.byteSize("subscriber_buffer_bytes", in: 1...(1 << 40)) ?? subscriberBufferBytes
        maxParkedConsumes = try config.int("max_parked_consumes", in: 1...10_000_000) ?? maxParkedConsumes
        maxKeyBytes = try config.byteSize("max_key_bytes", in: (64 << 10)...(1 << 40)) ?? maxKeyBytes
    }
}
