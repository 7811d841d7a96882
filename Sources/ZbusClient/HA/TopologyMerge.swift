import NIOCore

/// Broker address → entry id → entry: one tracker's table.
typealias ServerTable = [String: [String: TrackerEntry]]

/// The views of every tracker and how they merge into one ``ClusterTopology``: a pure value, driven by the tracker
/// subscriptions and tested without sockets or clocks.
///
/// Trackers keep no state on disk and do not talk to each other, so a client trusts them as follows:
/// - A fact about a broker's end (`server_leave`, `entry_remove`) holds whichever tracker tells it: it is applied to
///   every view.
/// - A broker's presence counts from the views of the trackers that are connected. A tracker that disconnected keeps
///   its last view, which still counts while no connected tracker has a settled view: with every tracker down, the
///   client works from its last topology.
/// - A tracker that (re)subscribes answers with what it knows *now*. A restarted tracker knows nothing until the
///   brokers report to it again, so for ``settle`` after each subscription its previous view still counts next to the
///   new one; only after that can a broker missing from its answer disappear.
struct TopologyMerge {
    struct View {
        var current: ServerTable = [:]
        /// The view before the latest subscription, counted until `previousUntil`.
        var previous: ServerTable?
        var previousUntil = NIODeadline.distantPast
        /// Brokers announced by `server_join` while the answer to `sub_all` is still coming (it ends with `pub_all`).
        var pending: ServerTable?
        var connected = false
        var everSubscribed = false
    }

    private(set) var views: [String: View] = [:]
    /// How long a fresh subscription's previous view still counts.
    let settle: TimeAmount

    init(trackers: [String], settle: TimeAmount) {
        self.settle = settle
        for tracker in trackers { views[tracker] = View() }
    }

    /// A `sub_all` was written on a new connection to `tracker`: what it announces from now on is its new view.
    mutating func subscribing(_ tracker: String) {
        views[tracker, default: View()].pending = [:]
    }

    /// The connection to `tracker` dropped (or its subscription failed): its view stays as it was, counted only while
    /// no connected tracker has a settled one.
    mutating func disconnected(_ tracker: String) {
        views[tracker, default: View()].connected = false
        views[tracker]?.pending = nil
    }

    /// Applies what `tracker` said at `now`.
    mutating func apply(_ event: TrackerEvent, from tracker: String, now: NIODeadline) {
        switch event {
        case .serverJoin(let server):
            update(tracker) { table in
                if table[server] == nil { table[server] = [:] }
            }
        case .entryUpdate(let entries):
            update(tracker) { table in
                for entry in entries { table[entry.server, default: [:]][entry.id] = entry }
            }
        case .serverLeave(let server):
            forEveryTable { $0.removeValue(forKey: server) }
        case .entryRemove(let entryId, let server):
            forEveryTable { table in
                if let server {
                    table[server]?.removeValue(forKey: entryId)
                } else {
                    for key in table.keys { table[key]?.removeValue(forKey: entryId) }
                }
            }
        case .snapshot(let entries):
            var view = views[tracker, default: View()]
            var fresh = view.pending ?? [:]
            for entry in entries { fresh[entry.server, default: [:]][entry.id] = entry }
            if view.everSubscribed || !view.current.isEmpty {
                view.previous = Self.union(view.current, now < view.previousUntil ? view.previous : nil)
                view.previousUntil = now + settle
            }
            view.current = fresh
            view.pending = nil
            view.connected = true
            view.everSubscribed = true
            views[tracker] = view
        }
    }

    /// The merged topology at `now`.
    func merged(now: NIODeadline) -> ClusterTopology {
        let anySettled = views.values.contains { $0.connected && now >= $0.previousUntil }
        var servers: ServerTable = [:]
        for view in views.values {
            if view.connected {
                Self.add(view.current, to: &servers)
                if now < view.previousUntil, let previous = view.previous { Self.add(previous, to: &servers) }
            } else if !anySettled {
                Self.add(view.current, to: &servers)
                if let previous = view.previous { Self.add(previous, to: &servers) }
            }
        }
        return ClusterTopology(servers: servers)
    }

    /// The next moment `merged` can change without an event (a previous view stops counting); `nil` when none.
    func nextChange(after now: NIODeadline) -> NIODeadline? {
        views.values.filter { $0.previous != nil && $0.previousUntil > now }.map(\.previousUntil).min()
    }

    private mutating func update(_ tracker: String, _ body: (inout ServerTable) -> Void) {
        var view = views[tracker, default: View()]
        if view.pending != nil {
            body(&view.pending!)
        } else {
            body(&view.current)
        }
        views[tracker] = view
    }

    private mutating func forEveryTable(_ body: (inout ServerTable) -> Void) {
        for key in views.keys {
            body(&views[key]!.current)
            if views[key]!.previous != nil { body(&views[key]!.previous!) }
            if views[key]!.pending != nil { body(&views[key]!.pending!) }
        }
    }

    private static func union(_ a: ServerTable, _ b: ServerTable?) -> ServerTable {
        var result = a
        if let b { add(b, to: &result) }
        return result
    }

    /// Adds `table` to `servers`; of two entries for the same MQ on the same broker, the later one wins.
    private static func add(_ table: ServerTable, to servers: inout ServerTable) {
        for (server, entries) in table {
            var merged = servers[server] ?? [:]
            for (id, entry) in entries {
                if let known = merged[id], known.lastUpdateTime > entry.lastUpdateTime { continue }
                merged[id] = entry
            }
            servers[server] = merged
        }
    }
}
