import Logging
import Zbus

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The process's open-file limit, raised to what the system allows.
///
/// Every connection and every MQ's files take descriptors; distributions often start services with a soft limit of
/// 1,024 under a much higher hard limit. Like Redis and NATS, the node raises the soft limit itself rather than
/// running out at a tenth of what it may use.
enum DescriptorLimit {
    /// Raises the soft limit to the hard one; returns the limit now in force.
    @discardableResult
    static func raise(logger: Logger, config: NodeConfig) -> UInt64 {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 0 }
        let before = UInt64(limit.rlim_cur)
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        let now = UInt64(limit.rlim_cur)
        if now != before {
            logger.info("open-file limit raised", metadata: ["from": "\(before)", "to": "\(now)"])
        }
        let wanted = UInt64(config.connectionLimits.maxConnections)
        if now < wanted + 64 {
            logger.warning("the open-file limit is below node.limits.max_connections: connections beyond it wait until others close", metadata: [
                "open_files": "\(now)", "max_connections": "\(wanted)",
            ])
        }
        return now
    }
}
