import Testing

@testable import ZbusMQ

/// The key filter's bookkeeping: stamps, tombstones and the three bounds (see ``KeyFilter``).
@Suite("Key filter")
struct KeyFilterTests {
    @Test("duplicates are found; a removed key can come back and keeps no stale place in the order")
    func removeAndReAdd() {
        var filter = KeyFilter(limit: 2)
        #expect(filter.add("a", group: "g") == .added)
        #expect(filter.add("a", group: "g") == .duplicate)
        #expect(filter.remove("a", group: "g") == 1)
        #expect(filter.remove("a", group: "g") == 0)
        #expect(filter.add("b", group: "g") == .added)
        #expect(filter.add("a", group: "g") == .added)
        // The group's limit forgets the oldest live key (b), not the tombstone of the first a.
        #expect(filter.add("c", group: "g") == .added)
        #expect(filter.add("a", group: "g") == .duplicate)
        #expect(filter.add("b", group: "g") == .added)
        #expect(filter.count == 2)
    }

    @Test("keys take their bytes from the node-wide budget and give them back whichever way they go")
    func memoryBudget() {
        let budget = KeyMemoryBudget(limit: 3 * KeyFilter.cost("k0", group: "g"))
        var filter = KeyFilter(limit: 2, maxKeys: 100, maxGroups: 100, budget: budget)
        var other = KeyFilter(limit: 100, budget: budget)
        #expect(filter.add("k0", group: "g") == .added)
        #expect(filter.add("k1", group: "g") == .added)
        #expect(other.add("k2", group: "g") == .added)
        // Full: the next key is refused, in either filter, and leaves nothing behind.
        #expect(other.add("k3", group: "g") == .outOfMemory)
        #expect(filter.add("k4", group: "h") == .outOfMemory)
        #expect(filter.groupCount == 1 && other.count == 1)
        // Forgotten by key_limit, removed, dropped with a group or with everything: the bytes come back.
        #expect(other.remove("k2", group: "g") == 1)
        #expect(filter.add("k5", group: "g") == .added, "forgets k0 (key_limit 2)")
        #expect(budget.usedBytes == 2 * KeyFilter.cost("k0", group: "g"))
        #expect(other.add("k6", group: "x") == .added)
        #expect(other.removeGroup("x") == 1)
        #expect(filter.removeAll() == 2)
        #expect(budget.usedBytes == 0)
    }

    @Test("max_keys forgets the oldest key of any group; an emptied group frees its place")
    func totalBound() {
        var filter = KeyFilter(limit: 100, maxKeys: 3, maxGroups: 3)
        #expect(filter.add("1", group: "x") == .added)
        #expect(filter.add("2", group: "y") == .added)
        #expect(filter.add("3", group: "z") == .added)
        #expect(filter.add("4", group: "x") == .added)
        #expect(filter.count == 3)
        #expect(filter.add("1", group: "x") == .added, "1 was the oldest, forgotten")
        // y lost its only key to the bound above, so it no longer counts against max_key_groups.
        #expect(filter.groupCount == 2)
        #expect(filter.add("5", group: "w") == .added, "forgets 3, the last key of z")
        #expect(filter.groupCount == 2)
    }

    @Test("a key in a new group beyond max_key_groups is refused and leaves nothing behind")
    func groupBound() {
        var filter = KeyFilter(limit: 100, maxKeys: 100, maxGroups: 2)
        #expect(filter.add("1", group: "x") == .added)
        #expect(filter.add("2", group: "y") == .added)
        #expect(filter.add("3", group: "z") == .tooManyGroups)
        #expect(filter.add("3", group: "x") == .added)
        #expect(filter.count == 3)
        #expect(filter.removeGroup("y") == 1)
        #expect(filter.add("3", group: "z") == .added)
        #expect(filter.groupCount == 2)
    }

    @Test("tombstones are compacted: many adds and removes keep the filter's size to its live keys")
    func churn() {
        var filter = KeyFilter(limit: 10)
        for round in 0..<10_000 {
            #expect(filter.add("k\(round)", group: "g") == .added)
            if round >= 5 { #expect(filter.remove("k\(round - 5)", group: "g") == 1) }
        }
        #expect(filter.count == 5)
        #expect(filter.removeAll() == 5)
        #expect(filter.count == 0)
    }
}
