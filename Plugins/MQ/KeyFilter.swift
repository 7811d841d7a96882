import Atomics
import DequeModule

/// The bytes all key filters of a node hold together, against `mq.max_key_bytes`: the other bounds are counts, and a
/// count of keys up to a header block long each would still be gigabytes.
final class KeyMemoryBudget: Sendable {
    /// The ceiling in bytes.
    let limit: Int
    private let used = ManagedAtomic<Int>(0)

    init(limit: Int) { self.limit = limit }

    /// Takes `bytes` from the budget; false (and nothing taken) when they do not fit.
    func reserve(_ bytes: Int) -> Bool {
        let total = used.wrappingIncrementThenLoad(by: bytes, ordering: .relaxed)
        guard total > limit else { return true }
        used.wrappingDecrement(by: bytes, ordering: .relaxed)
        return false
    }

    /// Gives `bytes` back.
    func release(_ bytes: Int) {
        if bytes > 0 { used.wrappingDecrement(by: bytes, ordering: .relaxed) }
    }

    /// Bytes held now.
    var usedBytes: Int { used.load(ordering: .relaxed) }
}

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
        /// The node's keys already hold what `max_key_bytes` allows; nothing was kept.
        case outOfMemory
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
    /// The node-wide budget the keys' bytes come out of, if any.
    let budget: KeyMemoryBudget?
    /// What this filter took from `budget`.
    private(set) var bytes = 0

    /// What one key is counted as: its bytes, its group's, and the entries that index it.
    static func cost(_ key: String, group: String) -> Int { key.utf8.count + group.utf8.count + 96 }

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

    init(limit: Int, maxKeys: Int = .max, maxGroups: Int = .max, budget: KeyMemoryBudget? = nil) {
        self.limit = limit
        self.maxKeys = maxKeys
        self.maxGroups = maxGroups
        self.budget = budget
    }

    /// The number of groups holding keys.
    var groupCount: Int { groups.count }

    /// Whether a key of `group` could be added without exceeding `maxGroups`.
    func admits(group: String) -> Bool { groups.count < maxGroups || groups[group] != nil }

    /// Adds `key` to `group`, forgetting the oldest keys beyond the bounds.
    mutating func add(_ key: String, group: String) -> AddResult {
        guard admits(group: group) else { return .tooManyGroups }
        if groups[group]?.keys[key] != nil { return .duplicate }
        let cost = Self.cost(key, group: group)
        if let budget, !budget.reserve(cost) { return .outOfMemory }
        bytes += cost
        let stamp = nextStamp + 1
        let limit = self.limit
        // Mutated through the dictionary's in-place accessor: copying the group out and back would copy its tables
        // (the cost that made adding quadratic).
        let forgotten: String? = withGroup(group) { entry in
            entry.keys[key] = stamp
            entry.order.append((key, stamp))
            let forgotten = entry.keys.count > limit ? Self.forgetOldest(of: &entry) : nil
            Self.compact(&entry)
            return forgotten
        }
        if let forgotten { releaseBytes(Self.cost(forgotten, group: group)) }
        nextStamp = stamp
        order.append(Entry(group: group, key: key, stamp: stamp))
        if forgotten == nil { count += 1 }
        while count > maxKeys { forgetOldestOverall() }
        compactOrder()
        return .added
    }

    /// Removes one key; returns 1 if it was there.
    mutating func remove(_ key: String, group: String) -> Int {
        guard groups[group]?.keys[key] != nil else { return 0 }
        releaseBytes(Self.cost(key, group: group))
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
        guard let removedGroup = groups.removeValue(forKey: group) else { return 0 }
        let removed = removedGroup.keys.count
        releaseBytes(removedGroup.keys.keys.reduce(0) { $0 + Self.cost($1, group: group) })
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
            releaseBytes(bytes)
        }
        return count
    }

    // MARK: - Internals

    /// Runs `body` on the group in place (created if missing).
    private mutating func withGroup<R>(_ group: String, _ body: (inout Group) -> R) -> R {
        body(&groups[group, default: Group()])
    }

    /// Gives `amount` of this filter's bytes back to the budget.
    private mutating func releaseBytes(_ amount: Int) {
        bytes -= amount
        budget?.release(amount)
    }

    /// Forgets the group's oldest live key; returns it, if there was one.
    private static func forgetOldest(of entry: inout Group) -> String? {
        while let oldest = entry.order.popFirst() {
            if entry.keys[oldest.key] == oldest.stamp {
                entry.keys.removeValue(forKey: oldest.key)
                return oldest.key
            }
        }
        return nil
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
