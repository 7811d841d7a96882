import NIOCore
import Testing
@testable import ZbusClient
import ZbusTestSupport

/// The tracker wire format as a subscriber reads it, and how the views of several trackers merge (pure values, no
/// sockets or clocks). The lines are those of `spec/transcripts/probe_ha_out.txt`.
@Suite("HA topology")
struct HaTopologyTests {
    static func message(_ cmd: String, server: String? = nil, body: String? = nil, id: String? = nil) -> Message {
        var message = body.map { Message(text: $0) } ?? Message()
        message.cmd = cmd
        message.server = server
        message.id = id
        return message
    }

    static func entry(_ mq: String, _ server: String, unconsumed: Int64 = 0, consumers: Int = 0, mode: Int = 1) -> TrackerEntry {
        TrackerEntry(id: mq, server: server, mode: mode, lastUpdateTime: 1, unconsumedCount: unconsumed, consumerCount: consumers)
    }

    static let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)

    @Test("a body of entry lines: lines that are not entries are skipped, not the whole table")
    func lenientLines() {
        let body = "HaQ\t127.0.0.1:15556\t1\t1795271766270\t0\t1\r\nbroken line\nB\th:2\t2\t5\t0\t3\n\n"
        #expect(TrackerEntry.parseLenient(body) == [
            TrackerEntry(id: "HaQ", server: "127.0.0.1:15556", mode: 1, lastUpdateTime: 1_795_271_766_270, unconsumedCount: 0, consumerCount: 1),
            TrackerEntry(id: "B", server: "h:2", mode: 2, lastUpdateTime: 5, unconsumedCount: 0, consumerCount: 3),
        ])
        #expect(TrackerEntry.parseLenient("").isEmpty)
    }

    @Test("each push of the transcript is the event it means; anything else is ignored")
    func events() {
        #expect(TrackerEvent(Self.message("server_join", server: "127.0.0.1:15556")) == .serverJoin("127.0.0.1:15556"))
        #expect(TrackerEvent(Self.message("server_leave", server: "127.0.0.1:15556")) == .serverLeave("127.0.0.1:15556"))
        #expect(TrackerEvent(Self.message("entry_update", body: "HaQ\t127.0.0.1:15556\t1\t1795271766270\t0\t0"))
            == .entryUpdate([TrackerEntry(id: "HaQ", server: "127.0.0.1:15556", mode: 1, lastUpdateTime: 1_795_271_766_270,
                                          unconsumedCount: 0, consumerCount: 0)]))
        #expect(TrackerEvent(Self.message("pub_all", id: "sa1")) == .snapshot([]))
        #expect(TrackerEvent(Self.message("pub_all", body: "A\th:1\t1\t5\t2\t0\nB\th:2\t2\t5\t0\t3\n"))
            == .snapshot([Self.entry("A", "h:1", unconsumed: 2).with(time: 5), Self.entry("B", "h:2", consumers: 3, mode: 2).with(time: 5)]))
        #expect(TrackerEvent(Self.message("entry_remove", server: "h:1", body: "HaQ")) == .entryRemove(entryId: "HaQ", server: "h:1"))
        #expect(TrackerEvent(Self.message("entry_remove", body: "HaQ\th:2")) == .entryRemove(entryId: "HaQ", server: "h:2"))
        #expect(TrackerEvent(Self.message("entry_remove", body: "HaQ")) == .entryRemove(entryId: "HaQ", server: nil))
        #expect(TrackerEvent(Self.message("server_join")) == nil)
        #expect(TrackerEvent(Self.message("heartbeat")) == nil)
        #expect(TrackerEvent(Message(status: 200)) == nil)
    }

    @Test("a broker address that is not one HOST:PORT is ignored, so that no request or consumer picks it")
    func badAddressesIgnored() {
        #expect(TrackerEvent(Self.message("server_join", server: "garbage")) == nil)
        #expect(TrackerEvent(Self.message("server_join", server: "h:1;h:2")) == nil)
        #expect(TrackerEvent(Self.message("server_join", server: "h:0")) == nil)
        #expect(TrackerEvent(Self.message("entry_update", body: "Q\tgarbage\t1\t0\t0\t0")) == nil)
        #expect(TrackerEvent(Self.message("pub_all", body: "A\th:1\t1\t5\t2\t0\nB\ta b,c:1\t1\t5\t0\t0\nC\th:1\rx\t1\t5\t0\t0"))
            == .snapshot([Self.entry("A", "h:1", unconsumed: 2).with(time: 5)]))
    }

    @Test("joins, updates, removes and leaves build the view; a leave told by one tracker holds for all")
    func followsChanges() {
        var merge = TopologyMerge(trackers: ["t1", "t2"], settle: .seconds(3))
        merge.subscribing("t1")
        merge.apply(.serverJoin("b1"), from: "t1", now: Self.t0)
        merge.apply(.snapshot([Self.entry("Q", "b1")]), from: "t1", now: Self.t0)
        merge.subscribing("t2")
        merge.apply(.snapshot([Self.entry("Q", "b1"), Self.entry("Q", "b2")]), from: "t2", now: Self.t0)
        var topology = merge.merged(now: Self.t0)
        #expect(topology.serverAddresses == ["b1", "b2"])
        #expect(topology.servers(hosting: "Q") == ["b1", "b2"])

        merge.apply(.entryUpdate([Self.entry("R", "b3", consumers: 2)]), from: "t1", now: Self.t0)
        topology = merge.merged(now: Self.t0)
        #expect(topology.serverAddresses == ["b1", "b2", "b3"])
        #expect(topology.entries(of: "R").first?.consumerCount == 2)

        merge.apply(.entryRemove(entryId: "Q", server: "b1"), from: "t1", now: Self.t0)
        #expect(merge.merged(now: Self.t0).servers(hosting: "Q") == ["b2"])

        // t1 alone says b2 left: t2's view loses it too.
        merge.apply(.serverLeave("b2"), from: "t1", now: Self.t0)
        topology = merge.merged(now: Self.t0)
        #expect(topology.serverAddresses == ["b1", "b3"])
        #expect(topology.servers(hosting: "Q").isEmpty)
    }

    @Test("with every tracker down the last topology stays; a connected settled tracker's view then wins")
    func keepsLastTopology() {
        var merge = TopologyMerge(trackers: ["t1", "t2"], settle: .seconds(3))
        merge.subscribing("t1")
        merge.apply(.snapshot([Self.entry("Q", "b1"), Self.entry("Q", "b2")]), from: "t1", now: Self.t0)
        merge.subscribing("t2")
        merge.apply(.snapshot([Self.entry("Q", "b1"), Self.entry("Q", "b2")]), from: "t2", now: Self.t0)
        merge.disconnected("t1")
        merge.disconnected("t2")
        let later = Self.t0 + .seconds(60)
        #expect(merge.merged(now: later).servers(hosting: "Q") == ["b1", "b2"])

        // t1 comes back knowing nothing yet (restarted): the old view still counts while it settles.
        merge.subscribing("t1")
        merge.apply(.snapshot([]), from: "t1", now: later)
        #expect(merge.merged(now: later + .seconds(1)).servers(hosting: "Q") == ["b1", "b2"])
        // The brokers report to it again: only b1 is alive.
        merge.apply(.serverJoin("b1"), from: "t1", now: later + .seconds(2))
        merge.apply(.entryUpdate([Self.entry("Q", "b1")]), from: "t1", now: later + .seconds(2))
        #expect(merge.merged(now: later + .seconds(2)).servers(hosting: "Q") == ["b1", "b2"])
        #expect(merge.nextChange(after: later + .seconds(2)) == later + .seconds(3))
        // Settled: t1 is the authority now, and disconnected t2's stale view no longer counts.
        #expect(merge.merged(now: later + .seconds(3)).servers(hosting: "Q") == ["b1"])
    }

    @Test("broker choice: hosting brokers, consumers for MQ-RPC, failed ones avoided, load spread")
    func choice() {
        var merge = TopologyMerge(trackers: ["t"], settle: .seconds(3))
        merge.subscribing("t")
        merge.apply(.serverJoin("b3"), from: "t", now: Self.t0)
        merge.apply(.snapshot([Self.entry("Q", "b1", consumers: 1), Self.entry("Q", "b2", unconsumed: 50)]), from: "t", now: Self.t0)
        let topology = merge.merged(now: Self.t0)
        let now = Self.t0
        #expect(ServerChoice.candidates(topology, mq: "Q", preferConsumers: false, excluding: [], local: [:], now: now) == ["b1", "b2"])
        #expect(ServerChoice.candidates(topology, mq: "Q", preferConsumers: true, excluding: [], local: [:], now: now) == ["b1"])
        #expect(ServerChoice.candidates(topology, mq: "New", preferConsumers: false, excluding: [], local: [:], now: now) == ["b1", "b2", "b3"])
        #expect(ServerChoice.candidates(topology, mq: "Q", preferConsumers: false, excluding: ["b1"], local: [:], now: now) == ["b2"])
        let avoided = ["b1": ServerChoice.Local(inFlight: 0, avoidUntil: now + .seconds(5))]
        #expect(ServerChoice.candidates(topology, mq: "Q", preferConsumers: false, excluding: [], local: avoided, now: now) == ["b2"])
        #expect(ServerChoice.candidates(topology, mq: "Q", preferConsumers: false, excluding: [], local: avoided, now: now + .seconds(5)) == ["b1", "b2"])
        // Every hosting broker avoided: they are tried anyway.
        #expect(ServerChoice.candidates(topology, mq: "Q", preferConsumers: false, excluding: ["b2"], local: avoided, now: now) == ["b1"])

        // Fewest requests in flight first, then fewest waiting messages.
        let busy = ["b1": ServerChoice.Local(inFlight: 3), "b2": ServerChoice.Local(inFlight: 1)]
        #expect(ServerChoice.leastLoaded(["b1", "b2"], topology: topology, mq: "Q", local: busy, turn: 0) == "b2")
        #expect(ServerChoice.leastLoaded(["b1", "b2"], topology: topology, mq: "Q", local: [:], turn: 1) == "b1")
        // Equal load: the turn spreads one-at-a-time sends over the brokers.
        let picks = (0..<4).map { ServerChoice.leastLoaded(["b1", "b3"], topology: topology, mq: "R", local: [:], turn: UInt64($0)) }
        #expect(Set(picks.compactMap { $0 }) == ["b1", "b3"])
        #expect(ServerChoice.leastLoaded([], topology: topology, mq: "Q", local: [:], turn: 0) == nil)
    }

    @Test("addresses: a tracker list or one bracketed tracker makes an HA broker")
    func connectMakesHaBroker() async throws {
        let list = "\(refusingAddress());\(refusingAddress())"
        let broker = try ZbusBroker.connect(list)
        #expect(broker is HaBroker)
        #expect(broker.address == list)
        await broker.close()
        let one = try ZbusBroker.connect("[\(refusingAddress())]")
        #expect((one as? HaBroker)?.trackers.count == 1)
        await one.close()
    }
}

extension TrackerEntry {
    fileprivate func with(time: Int64) -> TrackerEntry {
        var copy = self
        copy.lastUpdateTime = time
        return copy
    }
}
