import Foundation
import NIOCore
import Testing
import Zbus
import ZbusTestSupport

/// The HA broker against real `zbus` nodes, with trackers that answer from a table the test sets (``FakeTracker``): the
/// client's half of high availability, independent of the tracker module. Tests against real tracker processes are
/// in `HaClusterTests`.
@Suite("HA client", .blockingIO(.heavy))
struct HaClientTests {
    static func entry(_ mq: String, _ server: String, consumers: Int = 0, mode: Int = 1) -> TrackerEntry {
        TrackerEntry(id: mq, server: server, mode: mode, lastUpdateTime: 1, unconsumedCount: 0, consumerCount: consumers)
    }

    static func haBroker(_ trackers: [FakeTracker]) -> HaBroker {
        HaBroker(trackers: trackers.map { HostAndPort(host: "127.0.0.1", port: $0.port) }, configuration: quickConfiguration())
    }

    @Test("failover: a broker killed mid-stream, later restarted; every acknowledged message is consumed, from both brokers, and the producer sees no error")
    func failover() async throws {
        let directory = ZbusProcess.makeTemporaryDirectory("zbus-ha-b1")
        let b1 = LockedValue(try startProcessNode(directory: directory))
        let b2 = try startProcessNode()
        let port1 = b1.withLock { $0.port }
        defer {
            b1.withLock { $0.cleanUp() }
            b2.cleanUp()
        }
        let s1 = "127.0.0.1:\(port1)"
        let s2 = "127.0.0.1:\(b2.port)"
        let tracker = try await FakeTracker()
        tracker.setTable(servers: [s1, s2], entries: [Self.entry("Q", s1), Self.entry("Q", s2)])
        let producerBroker = Self.haBroker([tracker])
        let consumerBroker = Self.haBroker([tracker])
        let producer = Producer(broker: producerBroker, mq: "Q")
        try await producer.createMQ()

        let received = LockedValue<[String: Set<String>]>([:])  // id -> servers it came from
        let consumer = Consumer(broker: consumerBroker, mq: "Q")
        let consuming = Task {
            try await consumer.start(concurrency: 2) { message, _ in
                let id = message.id ?? "?"
                let server = message.server ?? "?"
                received.withLock { received in
                    received[id, default: []].insert(server)
                    return
                }
            }
        }

        let acknowledged = LockedValue<Set<String>>([])
        let failures = LockedValue<[String]>([])
        let total = 600
        let next = LockedValue(0)
        // Four producers in parallel, so that requests are in flight on the broker when it dies.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<4 {
                group.addTask {
                    while true {
                        let index = next.withLock { value -> Int in
                            defer { value += 1 }
                            return value
                        }
                        guard index < total else { return }
                        let id = "m\(index)"
                        do {
                            try await producer.send(Message(text: "payload \(index)", headers: [("id", id)]))
                            acknowledged.withLock { _ = $0.insert(id) }
                        } catch {
                            failures.withLock { $0.append("\(id): \(error)") }
                        }
                    }
                }
            }
            group.addTask {
                #expect(await eventually(within: 30) { acknowledged.withLock { $0.count } >= 150 })
                b1.withLock { $0.crash() }
                #expect(await eventually(within: 30) { acknowledged.withLock { $0.count } >= 400 })
                // Restarted on its store and port; the tracker announces it as a real one would.
                let restarted = try startProcessNode(directory: directory, listen: s1)
                b1.withLock { $0 = restarted }
                tracker.pushJoin(s1)
                tracker.pushUpdate(Self.entry("Q", s1))
            }
            try await group.waitForAll()
        }

        #expect(failures.withLock { $0 }.isEmpty, "the producer saw failures: \(failures.withLock { $0.prefix(5) })")
        let sent = acknowledged.withLock { $0 }
        #expect(sent.count == total)
        let allConsumed = await eventually(within: 30) { received.withLock { Set($0.keys) }.isSuperset(of: sent) }
        let missing = sent.subtracting(received.withLock { Set($0.keys) })
        #expect(allConsumed, "\(missing.count) acknowledged messages never consumed, e.g. \(missing.sorted().prefix(5))")
        let servers = received.withLock { $0.values.reduce(into: Set<String>()) { $0.formUnion($1) } }
        #expect(servers == [s1, s2], "consumed from \(servers)")

        consuming.cancel()
        _ = try? await consuming.value
        await consumer.close()
        await producerBroker.close()
        await consumerBroker.close()
        await tracker.stop()
    }

    @Test("every tracker down: producers and consumers keep working from the last topology; a tracker back is subscribed again")
    func trackersDown() async throws {
        let brokers = try TwoBrokers()
        defer { brokers.cleanUp() }
        let (s1, s2) = (brokers.s1, brokers.s2)
        let t1 = try await FakeTracker()
        let t2 = try await FakeTracker()
        // Each tracker knows one broker: the client's view is their union.
        t1.setTable(servers: [s1], entries: [Self.entry("D", s1)])
        t2.setTable(servers: [s2], entries: [Self.entry("D", s2)])
        let broker = Self.haBroker([t1, t2])
        let merged = await broker.waitForTopology(timeout: .seconds(10)) { $0.servers(hosting: "D").count == 2 }
        #expect(merged?.servers(hosting: "D") == [s1, s2].sorted())
        let producer = Producer(broker: broker, mq: "D")
        try await producer.createMQ()

        await t1.stop()
        await t2.stop()
        for index in 0..<20 { try await producer.send("while the trackers are down \(index)") }
        #expect(broker.topology.servers(hosting: "D") == [s1, s2].sorted())
        let consumer = Consumer(broker: broker, mq: "D")
        var taken = 0
        while taken < 20, try await consumer.take(timeout: .seconds(5)) != nil { taken += 1 }
        #expect(taken == 20)

        // A tracker comes back (restarted: it knows both brokers again) and the client subscribes to it again.
        t1.setTable(servers: [s1, s2], entries: [Self.entry("D", s1), Self.entry("D", s2)])
        try await t1.start()
        #expect(await eventually(within: 10) { t1.subscriptions >= 2 })
        try await producer.send("after the tracker came back")
        #expect(try await consumer.take(timeout: .seconds(5))?.bodyString == "after the tracker came back")
        #expect(broker.topology.servers(hosting: "D") == [s1, s2].sorted())

        // A broker leaves: the client stops sending there.
        t1.pushLeave(s2)
        #expect(await broker.waitForTopology(timeout: .seconds(5)) { $0.servers(hosting: "D") == [s1] } != nil)

        await consumer.close()
        await broker.close()
        await t1.stop()
    }

    @Test("a broker that starts hosting the MQ later is consumed from; pub/sub reaches every broker")
    func joinsAndPubSub() async throws {
        let brokers = try TwoBrokers()
        defer { brokers.cleanUp() }
        let (s1, s2) = (brokers.s1, brokers.s2)
        let tracker = try await FakeTracker()
        tracker.setTable(servers: [s1], entries: [Self.entry("J", s1)])
        let broker = Self.haBroker([tracker])
        let received = LockedValue<[String]>([])
        let consumer = Consumer(broker: broker, mq: "J")
        let consuming = Task {
            try await consumer.start { message, _ in
                let body = message.bodyString
                received.withLock { $0.append(body) }
            }
        }
        // b2 hosts J too, and a message waits there; the tracker then says so.
        let direct = try SingleBroker(address: s2, configuration: quickConfiguration())
        try await Producer(broker: direct, mq: "J").createMQ()
        try await Producer(broker: direct, mq: "J").send("stored on the late broker")
        tracker.pushJoin(s2)
        tracker.pushUpdate(Self.entry("J", s2))
        #expect(await eventually(within: 10) { received.withLock { $0 }.contains("stored on the late broker") })
        consuming.cancel()
        _ = try? await consuming.value
        await consumer.close()

        // Pub/sub: each broker has its own subscriber; one publish reaches both.
        let admin = MqAdmin(broker: broker)
        try await admin.create("P", mode: .pubSub)
        tracker.pushUpdate(Self.entry("P", s1, mode: 2))
        tracker.pushUpdate(Self.entry("P", s2, mode: 2))
        #expect(await broker.waitForTopology(timeout: .seconds(5)) { $0.servers(hosting: "P").count == 2 } != nil)
        let sub1 = Consumer(broker: try SingleBroker(address: s1, configuration: quickConfiguration()), mq: "P",
                            options: .init(topic: "news", autoCreate: nil))
        let sub2 = Consumer(broker: try SingleBroker(address: s2, configuration: quickConfiguration()), mq: "P",
                            options: .init(topic: "news", autoCreate: nil))
        // Subscribed once a first take is parked on each node.
        async let first1 = sub1.take(timeout: .seconds(10))
        async let first2 = sub2.take(timeout: .seconds(10))
        #expect(await eventually(within: 5) {
            let c1 = (try? await MqAdmin(broker: direct).query("P"))?.consumerCount ?? 0
            let c2 = (try? await MqAdmin(broker: try SingleBroker(address: s1)).query("P"))?.consumerCount ?? 0
            return c1 >= 1 && c2 >= 1
        })
        try await Producer(broker: broker, mq: "P").publish(Message(text: "to all"), topic: "news")
        #expect(try await first1?.bodyString == "to all")
        #expect(try await first2?.bodyString == "to all")
        await sub1.close()
        await sub2.close()
        await direct.close()
        await broker.close()
        await tracker.stop()
    }

    @Test("MQ-RPC through an HA broker: the service runs on every broker hosting its MQ, callers reach it")
    func mqRpc() async throws {
        let brokers = try TwoBrokers()
        defer { brokers.cleanUp() }
        let (s1, s2) = (brokers.s1, brokers.s2)
        let tracker = try await FakeTracker()
        // The tracker knows the MQ on both brokers, as it will once the service created it there.
        tracker.setTable(servers: [s1, s2], entries: [s1, s2].map { Self.entry("HaCalc", $0, mode: 9) })
        let serviceBroker = Self.haBroker([tracker])
        var processor = RpcProcessor()
        processor.module("calc") { $0.method("plus") { (a: Int, b: Int) in a + b } }
        let service = MqRpcService(broker: serviceBroker, mq: "HaCalc", processor: processor,
                                   configuration: .init(workers: 2, readyTimeout: .seconds(10)))
        try await service.start()
        for server in [s1, s2] {
            let info = try await MqAdmin(broker: try SingleBroker(address: server)).query("HaCalc")
            #expect(info?.consumerCount == 2, "workers on \(server)")
        }
        let callerBroker = Self.haBroker([tracker])
        let rpc = RpcInvoker(MqInvoker(broker: callerBroker, mq: "HaCalc"), module: "calc")
        for index in 0..<10 {
            #expect(try await rpc.call("plus", index, 1, as: Int.self) == index + 1)
        }
        await service.stop()
        await callerBroker.close()
        await serviceBroker.close()
        await tracker.stop()
    }

    @Test("an HA consumer's route(_:to:) reaches a caller on whichever broker delivered the request")
    func routeThroughCluster() async throws {
        let brokers = try TwoBrokers()
        defer { brokers.cleanUp() }
        let (s1, s2) = (brokers.s1, brokers.s2)
        let tracker = try await FakeTracker()
        tracker.setTable(servers: [s1, s2], entries: [Self.entry("Ask", s1, consumers: 1), Self.entry("Ask", s2, consumers: 1)])
        let serviceBroker = Self.haBroker([tracker])
        try await MqAdmin(broker: serviceBroker).create("Ask")
        let consumer = Consumer(broker: serviceBroker, mq: "Ask")
        let answering = Task {
            try await consumer.start { request, consumer in
                try await consumer.route(Message(status: 200, text: "answer to \(request.bodyString) from \(request.server ?? "?")"), to: request)
            }
        }
        // Both brokers count the consumer before the calls.
        for server in [s1, s2] {
            let admin = MqAdmin(broker: try SingleBroker(address: server, configuration: quickConfiguration()))
            #expect(await eventually(within: 10) { ((try? await admin.query("Ask"))?.consumerCount ?? 0) >= 1 })
        }
        let callerBroker = Self.haBroker([tracker])
        let caller = Producer(broker: callerBroker, mq: "Ask")
        var answeredBy: Set<String> = []
        for index in 0..<8 {
            let reply = try await caller.request(Message(text: "q\(index)"), timeout: .seconds(5))
            #expect(reply.status == 200)
            #expect(reply.bodyString.hasPrefix("answer to q\(index) from "))
            answeredBy.insert(String(reply.bodyString.split(separator: " ").last ?? ""))
        }
        // The calls were spread over both brokers, and each answer found its way back.
        #expect(answeredBy == [s1, s2], "answered via \(answeredBy)")
        answering.cancel()
        _ = await answering.result
        await consumer.close()
        await callerBroker.close()
        await serviceBroker.close()
        await tracker.stop()
    }

    @Test("close() of an HA consumer ends its start() loops and releases their connections on every broker")
    func closeEndsStart() async throws {
        let brokers = try TwoBrokers()
        defer { brokers.cleanUp() }
        let (s1, s2) = (brokers.s1, brokers.s2)
        let tracker = try await FakeTracker()
        tracker.setTable(servers: [s1, s2], entries: [Self.entry("C", s1), Self.entry("C", s2)])
        let broker = Self.haBroker([tracker])
        let consumer = Consumer(broker: broker, mq: "C")
        let returned = LockedValue(false)
        let consuming = Task {
            defer { returned.withLock { $0 = true } }
            try await consumer.start(concurrency: 2) { _, _ in }
        }
        let admins = try [s1, s2].map { MqAdmin(broker: try SingleBroker(address: $0, configuration: quickConfiguration())) }
        for admin in admins {
            #expect(await eventually(within: 10) { ((try? await admin.query("C"))?.consumerCount ?? 0) >= 2 })
        }
        // Closed, not cancelled: the loops stop and their connections close (they kept consuming before).
        await consumer.close()
        #expect(await eventually(within: 10) { returned.withLock { $0 } }, "start() still running after close()")
        for admin in admins {
            #expect(await eventually(within: 10) { (try? await admin.query("C"))?.consumerCount == 0 })
        }
        consuming.cancel()
        _ = try? await consuming.value
        for admin in admins { await admin.broker.close() }
        await broker.close()
        await tracker.stop()
    }
}

/// Two broker processes on OS-chosen ports, and their addresses.
private struct TwoBrokers {
    let nodes: [ZbusProcess]
    var s1: String { "127.0.0.1:\(nodes[0].port)" }
    var s2: String { "127.0.0.1:\(nodes[1].port)" }

    init() throws {
        let first = try startProcessNode()
        do {
            nodes = [first, try startProcessNode()]
        } catch {
            first.cleanUp()
            throw error
        }
    }

    func cleanUp() {
        for node in nodes { node.cleanUp() }
    }
}
