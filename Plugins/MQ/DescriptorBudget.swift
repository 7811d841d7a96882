#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// How many file descriptors the MQ table may still take, so that opening MQs never leaves the node unable to
/// accept a connection or open a segment file (issue 16: 600 `create_mq` under a 1,024-file limit bricked a node).
///
/// Counting reads `/proc/self/fd` (Linux), so it runs on `create_mq`, when an unopened MQ is opened and once at
/// start, never per message. Where the count is not available the store's own `EMFILE` is the only guard.
enum DescriptorBudget {
    /// Descriptors one MQ may hold: its directory, read cursor, written segment and read segment.
    static let perMQ = 4

    /// The soft `RLIMIT_NOFILE`, or `nil` when unlimited or unknown.
    static func limit() -> Int? {
        var limits = rlimit()
        #if os(Linux)
        let status = getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limits)
        #else
        let status = getrlimit(RLIMIT_NOFILE, &limits)
        #endif
        // RLIM_INFINITY is the largest value (its C macro does not import): any value past Int.max means unlimited.
        guard status == 0, limits.rlim_cur < rlim_t(Int.max) else { return nil }
        return Int(limits.rlim_cur)
    }

    /// Descriptors kept free for connections, listeners, logs and the store's passing needs: a quarter of the
    /// limit, at least 64.
    static func reserve(limit: Int) -> Int { max(64, limit / 4) }

    /// The number of descriptors the process has open, or `nil` where it cannot be counted cheaply.
    static func openCount() -> Int? {
        #if os(Linux)
        guard let directory = opendir("/proc/self/fd") else { return nil }
        defer { closedir(directory) }
        var count = 0
        while readdir(directory) != nil { count += 1 }
        return count - 3  // ".", ".." and the descriptor of the listing itself
        #else
        return nil
        #endif
    }

    /// How many more MQs fit beside the descriptors open now and the reserve; `nil` when there is no known bound.
    static func room() -> (mqs: Int, open: Int, limit: Int)? {
        guard let limit = limit(), let open = openCount() else { return nil }
        return (max(0, (limit - reserve(limit: limit) - open) / perMQ), open, limit)
    }

    /// The refusal for opening `count` more MQs now, naming the limit, or `nil` when they fit.
    static func refusal(opening count: Int) -> String? {
        guard let room = room(), room.mqs < count else { return nil }
        return "out of file descriptors: \(room.open) of \(room.limit) open (RLIMIT_NOFILE), \(reserve(limit: room.limit)) kept for connections, each MQ takes up to \(perMQ)"
    }
}
