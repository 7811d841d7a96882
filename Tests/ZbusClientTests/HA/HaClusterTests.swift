import Foundation
import NIOCore
import Testing
import Zbus
import ZbusTestSupport

/// The HA client against a real cluster: `zbus` processes running the tracker module and brokers that report to them,
/// each test with its own node files and OS-chosen ports.
@Suite("HA cluster", .blockingIO(.heavy))
struct HaClusterTests {
    /// Two trackers and two brokers reporting to both, each in its own directory.
    final class Cluster: @unchecked Sendable {
        let root = ZbusProcess.makeTemporaryDirectory("zbus-ha-cluster")
        private(set) var trackers: [ZbusProcess] = []
        private(set) var brokers: [ZbusProcess] = []
        private(set) var trackerPorts: [Int] = []
        private(set) var brokerPorts: [Int] = []

        init() throws {
            for index in 0..<2 {
                let process = try startTracker(index, listen: "127.0.0.1:0")
                trackers.append(process)
                trackerPorts.append(process.port)
            }
            for index in 0..<2 {
                let process = try startBroker(index, listen: "127.0.0.1:0")
                brokers.append(process)
                brokerPorts.append(process.port)
            }
        }

        var trackerList: [HostAndPort] { trackerPorts.map { HostAndPort(host: "127.0.0.1", port: $0) } }
        func brokerAddress(_ index: Int) -> String { "127.0.0.1:\(brokerPorts[index])" }

        private func directory(_ name: String) -> URL {
            let url = root.appendingPathComponent(name)
            try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
            return url
        }

        private func startTracker(_ index: Int, listen: String) throws -> ZbusProcess {
            let directory = directory("tracker-\(index)")
            let file = directory.appendingPathComponent("node.yaml")
            try "node:\n  name: tracker-\(index)\n  log_level: warning\nmodules:\n  - module: tracker\n"
                .write(to: file, atomically: true, encoding: .utf8)
            return try ZbusProcess(arguments: ["--config", file.path], directory: directory, listen: listen)
        }

        private func startBroker(_ index: Int, listen: String) throws -> ZbusProcess {
            let directory = directory("broker-\(index)")
            let file = directory.appendingPathComponent("node.yaml")
            let list = trackerPorts.map { "127.0.0.1:\($0)" }.joined(separator: ", ")
            try "node:\n  name: broker-\(index)\n  log_level: warning\ntrackers: [\(list)]\nmodules:\n  - module: mq\n"
                .write(to: file, atomically: true, encoding: .utf8)
            return try ZbusProcess(arguments: ["--config", file.path], directory: directory, listen: listen)
        }

        func killBroker(_ index: Int) { brokers[index].crash() }
        func restartBroker(_ index: Int) throws { brokers[index] = try startBroker(index, listen: brokerAddress(index)) }
        func killTracker(_ index: Int) { trackers[index].crash() }
        func restartTracker(_ index: Int) throws {
            trackers[index] = try startTracker(index, listen: "127.0.0.1:\(trackerPorts[index])")
        }

        func cleanUp() {
            for process in brokers + trackers { process.stop() }
            try? FileManager.default.removeItem(at: root)
        }
    }

    static func haBroker(_ cluster: Cluster) -> HaBroker {
        HaBroker(trackers: cluster.trackerList, configuration: quickConfiguration())
    }

    @Test("failover (acceptance 2): the producer's broker SIGKILLed and restarted; every acknowledged message is consumed from both brokers, the producer sees no error")
    func failover() async throws {
        let cluster = try Cluster()
        defer { cluster.cleanUp() }
        let s1 = cluster.brokerAddress(0)
        let s2 = cluster.brokerAddress(1)
        let producerBroker = Self.haBroker(cluster)
        let consumerBroker = Self.haBroker(cluster)
        let known = await producerBroker.waitForTopology(timeout: .seconds(15)) { Set($0.serverAddresses) == [s1, s2] }
        #expect(known != nil, "the trackers never named both brokers: \(producerBroker.topology)")
        let producer = Producer(broker: producerBroker, mq: "Orders")
        try await producer.createMQ()
        #expect(await producerBroker.waitForTopology(timeout: .seconds(10)) { $0.servers(hosting: "Orders").count == 2 } != nil)

        let received = LockedValue<[String: Set<String>]>([:])
        let consumer = Consumer(broker: consumerBroker, mq: "Orders")
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
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<4 {
                group.addTask {
                    while true {
                        let index = next.withLock { value -> Int in
                            defer { value += 1 }
                            return value
                        }
                        guard index < total else { return }
                        let id = "o\(index)"
                        do {
                            try await producer.send(Message(text: "order \(index)", headers: [("id", id)]))
                            acknowledged.withLock { _ = $0.insert(id) }
                        } catch {
                            failures.withLock { $0.append("\(id): \(error)") }
                        }
                    }
                }
            }
            group.addTask {
                #expect(await eventually(within: 30) { acknowledged.withLock { $0.count } >= 150 })
                cluster.killBroker(0)
                // The trackers notice the dropped connection and tell the subscribers.
                #expect(await producerBroker.waitForTopology(timeout: .seconds(5)) { !$0.serverAddresses.contains(s1) } != nil)
                #expect(await eventually(within: 30) { acknowledged.withLock { $0.count } >= 400 })
                try cluster.restartBroker(0)
            }
            try await group.waitForAll()
        }

        #expect(failures.withLock { $0 }.isEmpty, "the producer saw failures: \(failures.withLock { $0.prefix(5) })")
        let sent = acknowledged.withLock { $0 }
        #expect(sent.count == total)
        // The restarted broker joins again and its stored messages are consumed.
        let allConsumed = await eventually(within: 30) { received.withLock { Set($0.keys) }.isSuperset(of: sent) }
        let missing = sent.subtracting(received.withLock { Set($0.keys) })
        #expect(allConsumed, "\(missing.count) acknowledged messages never consumed, e.g. \(missing.sorted().prefix(5))")
        let servers = received.withLock { $0.values.reduce(into: Set<String>()) { $0.formUnion($1) } }
        #expect(servers == [s1, s2], "consumed from \(servers)")

        consuming.cancel()
        _ = await consuming.result
        await consumer.close()
        await producerBroker.close()
        await consumerBroker.close()
    }

    @Test("every tracker killed (acceptance 3, the client's half): clients keep working from their last topology; a restarted tracker is followed again")
    func trackersKilled() async throws {
        let cluster = try Cluster()
        defer { cluster.cleanUp() }
        let s1 = cluster.brokerAddress(0)
        let s2 = cluster.brokerAddress(1)
        let broker = Self.haBroker(cluster)
        #expect(await broker.waitForTopology(timeout: .seconds(15)) { Set($0.serverAddresses) == [s1, s2] } != nil)
        let producer = Producer(broker: broker, mq: "Kept")
        try await producer.createMQ()
        #expect(await broker.waitForTopology(timeout: .seconds(10)) { $0.servers(hosting: "Kept").count == 2 } != nil)

        cluster.killTracker(0)
        cluster.killTracker(1)
        for index in 0..<40 { try await producer.send("no tracker \(index)") }
        #expect(Set(broker.topology.servers(hosting: "Kept")) == [s1, s2])
        let consumer = Consumer(broker: broker, mq: "Kept")
        var bodies: Set<String> = []
        while bodies.count < 40, let message = try await consumer.take(timeout: .seconds(5)) { bodies.insert(message.bodyString) }
        #expect(bodies == Set((0..<40).map { "no tracker \($0)" }))

        // One tracker comes back: the client subscribes to it again and follows what it says (broker 2 dies).
        try cluster.restartTracker(0)
        cluster.killBroker(1)
        let followed = await broker.waitForTopology(timeout: .seconds(20)) { $0.serverAddresses == [s1] }
        #expect(followed != nil, "still \(broker.topology)")
        try await producer.send("after the tracker came back")
        #expect(try await consumer.take(timeout: .seconds(5))?.bodyString == "after the tracker came back")

        await consumer.close()
        await broker.close()
    }
}
