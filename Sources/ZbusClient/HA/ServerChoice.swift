import NIOCore

/// How the HA broker picks a broker for a request: a pure function of the topology and what the client itself
/// knows (requests in flight per broker, brokers that just failed), tested without sockets.
struct ServerChoice {
    /// What the client knows about one broker.
    struct Local: Sendable {
        var inFlight = 0
        /// Avoided until then, after a failed connection.
        var avoidUntil: NIODeadline?
    }

    /// The brokers a request for `mq` may go to, best first is not implied: all of them are eligible.
    ///
    /// - Brokers hosting `mq` (with `preferConsumers`, those of them that have consumers, if any do); when none
    ///   hosts it (not created yet, or the trackers have not heard yet), every broker.
    /// - Minus `excluding` (the brokers this request already failed on), and minus brokers avoided after a failure
    ///   unless every remaining one is.
    static func candidates(_ topology: ClusterTopology, mq: String?, preferConsumers: Bool, excluding: Set<String>,
                           local: [String: Local], now: NIODeadline) -> [String] {
        var servers: [String]
        let entries = mq.map { topology.entries(of: $0) } ?? []
        if entries.isEmpty {
            servers = topology.serverAddresses
        } else {
            let withConsumers = entries.filter { $0.consumerCount > 0 }
            servers = (preferConsumers && !withConsumers.isEmpty ? withConsumers : entries).map(\.server)
        }
        servers.removeAll { excluding.contains($0) }
        let healthy = servers.filter { server in
            guard let until = local[server]?.avoidUntil else { return true }
            return until <= now
        }
        return healthy.isEmpty ? servers : healthy
    }

    /// The least loaded of `candidates`: fewest requests this client has in flight there, then fewest messages
    /// waiting there as the trackers last reported; ties are broken by `turn`, so that a producer sending one message
    /// at a time still spreads its messages over the brokers rather than sticking to one (zbus 6.3 stuck to one per
    /// client IP).
    static func leastLoaded(_ candidates: [String], topology: ClusterTopology, mq: String?, local: [String: Local],
                            turn: UInt64) -> String? {
        guard !candidates.isEmpty else { return nil }
        let start = Int(turn % UInt64(candidates.count))
        var best: (server: String, inFlight: Int, waiting: Int64)?
        for offset in 0..<candidates.count {
            let server = candidates[(start + offset) % candidates.count]
            let inFlight = local[server]?.inFlight ?? 0
            let waiting = mq.flatMap { topology.servers[server]?[$0]?.unconsumedCount } ?? 0
            if let current = best, (current.inFlight, current.waiting) <= (inFlight, waiting) { continue }
            best = (server, inFlight, waiting)
        }
        return best?.server
    }
}
