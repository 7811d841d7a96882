import ZbusKernel

/// What a tracker knows, as a value type: the servers that joined, the entries each hosts, and who subscribed.
///
/// Every input (a report, a subscription, a closed connection, the passing of time) returns the changes to relay to
/// the subscribers, in order; the caller sends them. Time comes in as a number of milliseconds (any monotonic clock),
/// so the table is tested without clocks or sockets.
///
/// Two things zbus 6.3.0's tracker got wrong are right here by construction: there is one table, so a server that
/// leaves takes all its entries with it (6.3.0 removed it from one of its two views only), and an entry not refreshed
/// for ``Limits/expireAfterMilliseconds`` expires (6.3.0 never expired anything).
struct TrackerTable: Sendable {
    /// What the table holds at most.
    struct Limits: Sendable, Equatable {
        /// Servers known at once (`max_servers`).
        var maxServers = 1_000
        /// Entries of all servers together (`max_entries`).
        var maxEntries = 100_000
        /// Subscribed connections (`max_subscribers`).
        var maxSubscribers = 10_000
        /// An entry not refreshed for this long is removed (`expire_after`): three report intervals of 2 s. So is a
        /// server that has shown it refreshes (it reported again after joining) and then fell silent with no entry
        /// left: a hung broker whose connection stays open.
        var expireAfterMilliseconds: Int64 = 6_000
        /// Servers one connection may report for (`max_servers_per_connection`): a broker reports for one, so a
        /// connection claiming many is filling the table.
        var maxServersPerConnection = 16
    }

    /// One change to relay to every subscriber, in the order the table made them.
    enum Change: Sendable, Equatable {
        case serverJoined(String)
        case entryUpdated(TrackerEntry)
        case entryRemoved(id: String, server: String)
        case serverLeft(String)
    }

    /// Why an input was refused (the table is unchanged).
    enum Refusal: Error, Sendable, Equatable, CustomStringConvertible {
        case tooManyServers(limit: Int)
        case tooManyServersOnConnection(limit: Int)
        case tooManyEntries(limit: Int)
        case tooManySubscribers(limit: Int)

        var description: String {
            switch self {
            case .tooManyServers(let limit):
                return "server limit reached: the tracker knows \(limit) servers (tracker.max_servers)"
            case .tooManyServersOnConnection(let limit):
                return "server limit reached: this connection reports for \(limit) servers (tracker.max_servers_per_connection)"
            case .tooManyEntries(let limit):
                return "entry limit reached: the tracker holds \(limit) entries (tracker.max_entries)"
            case .tooManySubscribers(let limit):
                return "subscriber limit reached: \(limit) connections subscribed (tracker.max_subscribers)"
            }
        }
    }

    /// An entry and when it was last reported.
    struct Slot: Sendable, Equatable {
        var entry: TrackerEntry
        var refreshedAt: Int64
    }

    /// A server that joined: the connection that reports for it (its death is the server's), its entries by id, and
    /// when it last reported.
    struct Server: Sendable, Equatable {
        var owner: String?
        var entries: [String: Slot] = [:]
        /// The time of its last `server_join` or `entry_update`.
        var reportedAt: Int64 = 0
        /// It joined again or reported an entry again, so it is a reporter that refreshes, and its silence means it
        /// hung. (A zbus 6.3 broker with no MQ joins once and never reports again; it must not expire for that.)
        var refreshes = false
    }

    let limits: Limits
    private(set) var servers: [String: Server] = [:]
    /// Subscribed session ids.
    private(set) var subscribers: Set<String> = []
    /// Entries of all servers.
    private(set) var entryCount = 0

    init(limits: Limits = Limits()) {
        self.limits = limits
    }

    // MARK: - Reports

    /// `server_join`: `server` is up and reports over the connection `session`, which now owns it (a server that
    /// reconnects before its old connection is noticed dead moves to the new one, and the old one's close is then
    /// no longer its death). A server already known is not announced again.
    mutating func join(server: String, session: String?, now: Int64 = 0) throws(Refusal) -> [Change] {
        if servers[server] != nil {
            if let session, servers[server]!.owner != session {
                try checkConnectionLimit(session)
                servers[server]!.owner = session
            }
            servers[server]!.reportedAt = now
            servers[server]!.refreshes = true
            return []
        }
        guard servers.count < limits.maxServers else { throw .tooManyServers(limit: limits.maxServers) }
        if let session { try checkConnectionLimit(session) }
        servers[server] = Server(owner: session, reportedAt: now)
        return [.serverJoined(server)]
    }

    private func checkConnectionLimit(_ session: String) throws(Refusal) {
        var owned = 0
        for server in servers.values where server.owner == session {
            owned += 1
            if owned >= limits.maxServersPerConnection { throw .tooManyServersOnConnection(limit: limits.maxServersPerConnection) }
        }
    }

    /// `entry_update`: the entry is (still) hosted by its server as of `now`. A server not joined yet joins first,
    /// owned by `session`. Every update is relayed, refreshes included, as subscribers read load from them.
    mutating func update(_ entry: TrackerEntry, session: String?, now: Int64) throws(Refusal) -> [Change] {
        let isNew = servers[entry.server]?.entries[entry.id] == nil
        if isNew, entryCount >= limits.maxEntries { throw .tooManyEntries(limit: limits.maxEntries) }
        var changes: [Change] = []
        if servers[entry.server] == nil {
            changes = try join(server: entry.server, session: session, now: now)
        } else {
            servers[entry.server]!.reportedAt = now
            if !isNew { servers[entry.server]!.refreshes = true }
        }
        servers[entry.server]!.entries[entry.id] = Slot(entry: entry, refreshedAt: now)
        if isNew { entryCount += 1 }
        changes.append(.entryUpdated(entry))
        return changes
    }

    /// `entry_remove`: `server` no longer hosts `id`.
    mutating func remove(entry id: String, server: String) -> [Change] {
        guard servers[server]?.entries.removeValue(forKey: id) != nil else { return [] }
        entryCount -= 1
        return [.entryRemoved(id: id, server: server)]
    }

    /// `server_leave` (or the death of its connection): the server and every entry it hosted are gone. Subscribers
    /// hear only `server_leave`, which takes the server's entries with it, as in zbus 6.3.
    mutating func leave(server: String) -> [Change] {
        guard let gone = servers.removeValue(forKey: server) else { return [] }
        entryCount -= gone.entries.count
        return [.serverLeft(server)]
    }

    /// A connection closed: a subscriber stops hearing, and the servers it reported for leave.
    mutating func sessionClosed(_ session: String) -> [Change] {
        subscribers.remove(session)
        let owned = servers.filter { $0.value.owner == session }.keys.sorted()
        return owned.flatMap { leave(server: $0) }
    }

    /// Removes the entries not refreshed within ``Limits/expireAfterMilliseconds`` of `now`, then the servers that
    /// refresh but have reported nothing for as long and have no entry left (hung, their connection still open).
    mutating func expire(now: Int64) -> [Change] {
        var changes: [Change] = []
        for server in servers.keys.sorted() {
            let stale = servers[server]!.entries.filter { now - $0.value.refreshedAt >= limits.expireAfterMilliseconds }
            for id in stale.keys.sorted() { changes += remove(entry: id, server: server) }
            let current = servers[server]!
            if current.refreshes, current.entries.isEmpty, now - current.reportedAt >= limits.expireAfterMilliseconds {
                changes += leave(server: server)
            }
        }
        return changes
    }

    // MARK: - Subscribers

    /// `sub_all`: `session` hears every change from now on. Subscribing twice is one subscription.
    mutating func subscribe(_ session: String) throws(Refusal) {
        guard !subscribers.contains(session) else { return }
        guard subscribers.count < limits.maxSubscribers else { throw .tooManySubscribers(limit: limits.maxSubscribers) }
        subscribers.insert(session)
    }

    /// The servers, sorted.
    var serverAddresses: [String] { servers.keys.sorted() }

    /// Every entry, sorted by id then server (what `pub_all` carries).
    var entries: [TrackerEntry] {
        servers.values.flatMap { $0.entries.values.map(\.entry) }.sorted { ($0.id, $0.server) < ($1.id, $1.server) }
    }
}
