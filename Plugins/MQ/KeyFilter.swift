import DequeModule

/// Dedupe keys per group (`key_group`), bounded: beyond `limit` keys in a group the oldest is forgotten, so the filter
/// cannot grow forever.
struct KeyFilter: Sendable {
    private var groups: [String: Group] = [:]
    let limit: Int

    private struct Group: Sendable {
        var keys: Set<String> = []
        var order: Deque<String> = []
    }

    init(limit: Int) { self.limit = limit }

    /// Adds `key` to `group`; returns false when it was already there.
    mutating func add(_ key: String, group: String) -> Bool {
        var entry = groups[group] ?? Group()
        guard entry.keys.insert(key).inserted else { return false }
        entry.order.append(key)
        if entry.order.count > limit, let oldest = entry.order.popFirst() { entry.keys.remove(oldest) }
        groups[group] = entry
        return true
    }

    /// Removes one key; returns 1 if it was there.
    mutating func remove(_ key: String, group: String) -> Int {
        guard var entry = groups[group], entry.keys.remove(key) != nil else { return 0 }
        if let index = entry.order.firstIndex(of: key) { entry.order.remove(at: index) }
        groups[group] = entry
        return 1
    }

    /// Drops a whole group; returns its size.
    mutating func removeGroup(_ group: String) -> Int {
        groups.removeValue(forKey: group)?.keys.count ?? 0
    }

    /// Drops every group; returns the total number of keys dropped.
    mutating func removeAll() -> Int {
        defer { groups.removeAll() }
        return groups.values.reduce(0) { $0 + $1.keys.count }
    }
}
