import Testing
@testable import ZbusTrackerModule
import ZbusKernel

@Suite("Tracker table")
struct TrackerTableTests {
    private func entry(_ id: String, _ server: String = "10.0.0.1:15555", consumers: Int = 0) -> TrackerEntry {
        TrackerEntry(id: id, server: server, mode: 1, lastUpdateTime: 1_795_271_766_270, unconsumedCount: 0, consumerCount: consumers)
    }

    @Test("a join is announced once; updates are all relayed; a leave takes the server's entries with it")
    func joinUpdateLeave() throws {
        var table = TrackerTable()
        #expect(try table.join(server: "10.0.0.1:15555", session: "a") == [.serverJoined("10.0.0.1:15555")])
        #expect(try table.join(server: "10.0.0.1:15555", session: "a") == [])
        #expect(try table.update(entry("Q"), session: "a", now: 0) == [.entryUpdated(entry("Q"))])
        #expect(try table.update(entry("Q", consumers: 1), session: "a", now: 10) == [.entryUpdated(entry("Q", consumers: 1))])
        #expect(table.entryCount == 1)
        #expect(table.leave(server: "10.0.0.1:15555") == [.serverLeft("10.0.0.1:15555")])
        // 6.3.0 kept the entries in one of its views: here nothing of the server is left.
        #expect(table.entries.isEmpty && table.serverAddresses.isEmpty && table.entryCount == 0)
        #expect(table.leave(server: "10.0.0.1:15555") == [])
    }

    @Test("an update from a server that never joined joins it first")
    func implicitJoin() throws {
        var table = TrackerTable()
        #expect(try table.update(entry("Q"), session: "a", now: 0) == [.serverJoined("10.0.0.1:15555"), .entryUpdated(entry("Q"))])
        #expect(table.servers["10.0.0.1:15555"]?.owner == "a")
    }

    @Test("entry_remove relays only what existed")
    func remove() throws {
        var table = TrackerTable()
        _ = try table.update(entry("Q"), session: "a", now: 0)
        #expect(table.remove(entry: "Q", server: "10.0.0.1:15555") == [.entryRemoved(id: "Q", server: "10.0.0.1:15555")])
        #expect(table.remove(entry: "Q", server: "10.0.0.1:15555") == [])
        #expect(table.serverAddresses == ["10.0.0.1:15555"])
    }

    @Test("the close of the reporting connection is the server's death, unless the server moved to a newer connection")
    func connectionOwnership() throws {
        var table = TrackerTable()
        _ = try table.join(server: "s1", session: "old")
        _ = try table.join(server: "s2", session: "other")
        _ = try table.join(server: "s1", session: "new")  // reconnected before the old connection was noticed dead
        #expect(table.sessionClosed("old") == [])
        #expect(table.sessionClosed("new") == [.serverLeft("s1")])
        #expect(table.serverAddresses == ["s2"])
    }

    @Test("an entry not refreshed within expire_after expires; refreshed ones stay")
    func expiry() throws {
        var table = TrackerTable(limits: .init(expireAfterMilliseconds: 6_000))
        _ = try table.update(entry("A"), session: "a", now: 0)
        _ = try table.update(entry("B"), session: "a", now: 0)
        _ = try table.update(entry("B"), session: "a", now: 4_000)
        #expect(table.expire(now: 5_999) == [])
        #expect(table.expire(now: 6_000) == [.entryRemoved(id: "A", server: "10.0.0.1:15555")])
        #expect(table.entries.map(\.id) == ["B"])
        // The server refreshed and has gone silent with nothing left: hung, it goes too.
        #expect(table.expire(now: 10_000) == [.entryRemoved(id: "B", server: "10.0.0.1:15555"), .serverLeft("10.0.0.1:15555")])
        #expect(table.entryCount == 0 && table.serverAddresses.isEmpty)
    }

    @Test("a server that refreshes and falls silent expires (hung, its connection open); one that never refreshed (a 6.3 broker with no MQ) stays")
    func hungServerExpiry() throws {
        var table = TrackerTable(limits: .init(expireAfterMilliseconds: 6_000))
        _ = try table.join(server: "old", session: "a", now: 0)  // joins once and is silent from then on, as 6.3 does
        _ = try table.join(server: "new", session: "b", now: 0)
        _ = try table.join(server: "new", session: "b", now: 2_000)  // zbus joins again each interval while it has no entry
        #expect(table.expire(now: 7_999) == [])
        #expect(table.expire(now: 8_000) == [.serverLeft("new")])
        #expect(table.expire(now: 100_000) == [])
        #expect(table.serverAddresses == ["old"])
        // A refreshing server's entries keep it: it expires only once they have.
        _ = try table.update(entry("Q", "s"), session: "c", now: 0)
        _ = try table.update(entry("Q", "s"), session: "c", now: 5_000)
        #expect(table.expire(now: 10_000) == [])
        #expect(table.expire(now: 11_000) == [.entryRemoved(id: "Q", server: "s"), .serverLeft("s")])
    }

    @Test("one connection reports for at most max_servers_per_connection servers")
    func serversPerConnection() throws {
        var table = TrackerTable(limits: .init(maxServersPerConnection: 2))
        _ = try table.join(server: "s1", session: "a")
        _ = try table.join(server: "s2", session: "a")
        #expect(throws: TrackerTable.Refusal.tooManyServersOnConnection(limit: 2)) { try table.join(server: "s3", session: "a") }
        #expect(throws: TrackerTable.Refusal.tooManyServersOnConnection(limit: 2)) { try table.update(entry("Q", "s3"), session: "a", now: 0) }
        _ = try table.join(server: "s3", session: "b")
        // Taking over a server another connection reported for counts too.
        #expect(throws: TrackerTable.Refusal.tooManyServersOnConnection(limit: 2)) { try table.join(server: "s3", session: "a") }
        _ = try table.join(server: "s1", session: "a")  // its own again: not a new one
        #expect(table.serverAddresses == ["s1", "s2", "s3"])
        #expect("\(TrackerTable.Refusal.tooManyServersOnConnection(limit: 2))".contains("tracker.max_servers_per_connection"))
    }

    @Test("limits on servers, entries and subscribers refuse without changing the table")
    func limits() throws {
        var table = TrackerTable(limits: .init(maxServers: 1, maxEntries: 2, maxSubscribers: 1))
        _ = try table.join(server: "s1", session: "a")
        #expect(throws: TrackerTable.Refusal.tooManyServers(limit: 1)) { try table.join(server: "s2", session: "b") }
        #expect(throws: TrackerTable.Refusal.tooManyServers(limit: 1)) { try table.update(entry("Q", "s2"), session: "b", now: 0) }
        _ = try table.update(entry("A", "s1"), session: "a", now: 0)
        _ = try table.update(entry("B", "s1"), session: "a", now: 0)
        #expect(throws: TrackerTable.Refusal.tooManyEntries(limit: 2)) { try table.update(entry("C", "s1"), session: "a", now: 0) }
        _ = try table.update(entry("B", "s1"), session: "a", now: 1)  // a refresh is not a new entry
        try table.subscribe("x")
        try table.subscribe("x")
        #expect(throws: TrackerTable.Refusal.tooManySubscribers(limit: 1)) { try table.subscribe("y") }
        #expect(table.entryCount == 2 && table.serverAddresses == ["s1"])
        #expect("\(TrackerTable.Refusal.tooManyEntries(limit: 2))".contains("tracker.max_entries"))
        _ = table.sessionClosed("x")
        try table.subscribe("y")
    }

    @Test("pub_all lists every entry sorted by id then server")
    func snapshotOrder() throws {
        var table = TrackerTable()
        _ = try table.update(entry("B", "s2"), session: "b", now: 0)
        _ = try table.update(entry("A", "s2"), session: "b", now: 0)
        _ = try table.update(entry("A", "s1"), session: "a", now: 0)
        #expect(table.entries.map { "\($0.id)@\($0.server)" } == ["A@s1", "A@s2", "B@s2"])
        #expect(table.serverAddresses == ["s1", "s2"])
    }
}

@Suite("Tracker entry lines")
struct TrackerEntryLineTests {
    @Test("the tab-separated form of zbus 6.3 round-trips, and a bad line names the field")
    func roundTrip() throws {
        let line = "HaQ\t127.0.0.1:15556\t1\t1795271766270\t0\t1"
        let entry = try TrackerEntry(parsing: Substring(line))
        #expect(entry == TrackerEntry(id: "HaQ", server: "127.0.0.1:15556", mode: 1, lastUpdateTime: 1_795_271_766_270,
                                      unconsumedCount: 0, consumerCount: 1))
        #expect(entry.line == line)
        #expect(try TrackerEntry.parseLines(line + "\n" + line.replacingOccurrences(of: "HaQ", with: "Q2") + "\n").map(\.id) == ["HaQ", "Q2"])
        #expect(throws: TrackerEntry.ParseError.self) { try TrackerEntry(parsing: "HaQ\t127.0.0.1:1\t1") }
        do {
            _ = try TrackerEntry(parsing: "HaQ\t127.0.0.1:1\tx\t0\t0\t0")
            Issue.record("a mode that is not a number was accepted")
        } catch {
            #expect(error.description.contains("mode (field 3)"))
        }
    }
}
