import DequeModule

/// Dedupe keys per group (`key_group`), bounded three ways so that no client can make it grow without end: beyond
/// `limit` keys in a group the group's oldest is forgotten (`key_limit`), beyond `maxKeys` keys in all the MQ's
/// oldest is forgotten (`max_keys`), and a key in a new group beyond `maxGroups` groups is refused (`max_key_groups`):
/// forgetting a whole group would silently undo a producer's dedupe, refusing tells it.
///
/// Every operation but ``removeAll()`` and ``removeGroup(_:)`` is O(1) amortized and mutates the groups in place.
/// Keys carry the stamp they were added with; the order queues are not searched on removal but keep the removed
/// key's entry as a tombstone (an entry whose stamp no longer matches), skipped when it reaches the front, and
/// compacted away once tombstones outnumber live keys.
struct KeyFilter: Sendable {
    /// What ``add(_:group:)`` did.
    enum AddResult: Equatable, Sendable {
        /// The key was new and is now kept.
        case added
        /// The key was already there.
        case duplicate
        /// The key's group is new and the MQ already has `maxGroups` groups; nothing was kept.
        case tooManyGroups
    }

    private var groups: [String: Group] = [:]
    /// Every key of every group in the order added, for the MQ-wide bound (tombstones included).
    private var order: Deque<Entry> = []
    private var nextStamp: UInt64 = 0
    /// Live keys in all groups.
    private(set) var count = 0
    /// Keys kept per group (`key_limit`).
    let limit: Int
    /// Keys kept in all groups together (`max_keys`).
    let maxKeys: Int
    /// Groups kept (`max_key_groups`).
    let maxGroups: Int

    private struct Group: Sendable {
        /// Each live key with the stamp it was added with.
        var keys: [String: UInt64] = [:]
        /// The group's keys in the order added (tombstones included), for `limit`.
        var order: Deque<(key: String, stamp: UInt64)> = []
    }

    private struct Entry: Sendable {
        let group: String
        let key: String
        let stamp: UInt64
    }

    init(limit: Int, maxKeys: Int = .max, maxGroups: Int = .max) {
        self.limit = limit
        self.maxKeys = maxKeys
        self.maxGroups = maxGroups
    }

    /// The number of groups holding keys.
    var groupCount: Int { groups.count }

    /// Whether a key of `group` could be added without exceeding `maxGroups`.
    func admits(group: String) -> Bool { groups.count < maxGroups || groups[group] != nil }

    /// Adds `key` to `group`, forgetting the oldest keys beyond the bounds.
    mutating func add(_ key: String, group: String) -> AddResult {
        guard admits(group: group) else { return .tooManyGroups }
        let stamp = nextStamp + 1
        let limit = self.limit
        // Mutated through the dictionary's in-place accessor: copying the group out and back would copy its tables
        // (the cost that made adding quadratic).
        let result: (added: Bool, forgot: Bool) = withGroup(group) { entry in
            guard entry.keys[key] == nil else { return (false, false) }
            entry.keys[key] = stamp
            entry.order.append((key, stamp))
            let forgot = entry.keys.count > limit && Self.forgetOldest(of: &entry)
            Self.compact(&entry)
            return (true, forgot)
        }
        guard result.added else { return .duplicate }
        nextStamp = stamp
        order.append(Entry(group: group, key: key, stamp: stamp))
        if !result.forgot { count += 1 }
        while count > maxKeys { forgetOldestOverall() }
        compactOrder()
        return .added
    }

    /// Removes one key; returns 1 if it was there.
    mutating func remove(_ key: String, group: String) -> Int {
        guard groups[group]?.keys[key] != nil else { return 0 }
        let emptied: Bool = withGroup(group) { entry in
            entry.keys.removeValue(forKey: key)
            Self.compact(&entry)
            return entry.keys.isEmpty
        }
        if emptied { groups.removeValue(forKey: group) }
        count -= 1
        compactOrder()
        return 1
    }

    /// Drops a whole group; returns its size.
    mutating func removeGroup(_ group: String) -> Int {
        let removed = groups.removeValue(forKey: group)?.keys.count ?? 0
        count -= removed
        compactOrder()
        return removed
    }

    /// Drops every group; returns the total number of keys dropped.
    mutating func removeAll() -> Int {
        defer {
            groups.removeAll()
            order.removeAll()
            count = 0
        }
        return count
    }

    // MARK: - Internals

    /// Runs `body` on the group in place (created if missing).
    private mutating func withGroup<R>(_ group: String, _ body: (inout Group) -> R) -> R {
        body(&groups[group, default: Group()])
    }

    /// Forgets the group's oldest live key; returns whether there was one.
    private static func forgetOldest(of entry: inout Group) -> Bool {
        while let oldest = entry.order.popFirst() {
            if entry.keys[oldest.key] == oldest.stamp {
                entry.keys.removeValue(forKey: oldest.key)
                return true
            }
        }
        return false
    }

    /// Forgets the MQ's oldest live key (`max_keys`).
    private mutating func forgetOldestOverall() {
        while let oldest = order.popFirst() {
            guard groups[oldest.group]?.keys[oldest.key] == oldest.stamp else { continue }
            _ = remove(oldest.key, group: oldest.group)
            return
        }
    }

    /// Rebuilds a group's order once most of it is tombstones: O(1) amortized over the removals that made them.
    private static func compact(_ entry: inout Group) {
        guard entry.order.count > 2 * entry.keys.count + 16 else { return }
        let keys = entry.keys
        entry.order = Deque(entry.order.filter { keys[$0.key] == $0.stamp })
    }

    private mutating func compactOrder() {
        guard order.count > 2 * count + 16 else { return }
        let groups = self.groups
        order = Deque(order.filter { groups[$0.group]?.keys[$0.key] == $0.stamp })
    }
}
