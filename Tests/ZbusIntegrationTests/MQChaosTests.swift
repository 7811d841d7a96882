import Foundation
import Testing
import ZbusKernel
import ZbusTestSupport

/// Producers, competing consumers that long-poll, acknowledge by asking again, or vanish at any point, and node
/// restarts (clean and SIGKILL), interleaved at random against the real binary. Checks at-least-once delivery as a
/// user relies on it: no acknowledged produce is ever lost, a message whose acknowledgement the node confirmed never
/// comes back (except after a crash, once), nothing is delivered that was not produced, and once everything is
/// drained and acknowledged the queue stays empty across a restart.
@Suite("MQ chaos: producers, consumers that vanish, restarts", .serialized, .blockingIO(.heavy))
struct MQChaosTests {
    /// A consumer connection and what the node has handed it.
    private final class Consumer {
        var client: WireClient
        /// The last message delivered to this connection, not yet known to be acknowledged.
        var held: String?
        /// A consume was sent and its reply not read yet.
        var awaitingReply = false
        init(client: WireClient) { self.client = client }
    }

    /// What the run has seen, and the checks made as it goes.
    private struct Ledger {
        var produced = Set<String>()
        var acknowledgedProduces: [String] = []
        /// Messages whose acknowledgement the node confirmed (the same connection's next consume got its reply).
        var settled = Set<String>()
        /// Settled before a crash: the cursor may not have reached the disk, so each may be delivered once more.
        var mayReturnOnce = Set<String>()
        /// Held by a connection that vanished with a consume outstanding: acknowledged or not, the node decided.
        var undecided = Set<String>()
        var deliveries = 0
        var log: [String] = []

        mutating func delivered(_ body: String, to consumer: Int) {
            deliveries += 1
            log.append("c\(consumer) <- \(body)")
            #expect(produced.contains(body), "delivered a message never produced: \(body)")
            if settled.contains(body) {
                if mayReturnOnce.remove(body) == nil {
                    Issue.record("acknowledged message delivered again: \(body); last steps: \(log.suffix(12))")
                }
                settled.remove(body)
            }
            undecided.remove(body)
        }
    }

    @Test("every acknowledged produce is delivered, acknowledged deliveries never return, nothing is invented",
          arguments: [("interval", 1), ("always", 1), ("interval", 4)])
    func chaos(fsync: String, mode: Int) throws {
        // Mode 4 keeps messages in memory: they do not outlive the node by definition, so that run has no restarts.
        let durable = mode == 1
        let extra = "    fsync: \(fsync)\n"
        let directory = ZbusProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        var node = try startMQNode(directory: directory, extra: extra)
        defer { node.cleanUp() }
        let admin = try node.connect()
        admin.request([("cmd", "create_mq"), ("mq_name", "Chaos"), ("mq_mode", String(mode))])
        expectReply(try admin.receive(), status: 200)

        var producers = try (0..<3).map { _ in try node.connect() }
        var consumers = try (0..<5).map { _ in Consumer(client: try node.connect()) }
        var ledger = Ledger()
        var restarts = 0
        var crashes = 0

        /// Reads the reply to `consumer`'s outstanding consume and books it.
        func settle(_ index: Int) throws {
            let consumer = consumers[index]
            let reply = try consumer.client.receive(timeout: 5)
            consumer.awaitingReply = false
            // The reply proves the node took the consume, which acknowledged what the connection held.
            if let held = consumer.held { ledger.settled.insert(held) }
            consumer.held = nil
            if reply.status == 200 {
                ledger.delivered(reply.bodyString, to: index)
                consumer.held = reply.bodyString
            } else {
                #expect(reply.status == 204, "consume answered \(reply.status): \(reply.bodyString)")
            }
        }

        /// Drops `consumer`'s connection (abruptly or not) and gives it a fresh one.
        func vanish(_ index: Int, reset: Bool) throws {
            let consumer = consumers[index]
            if consumer.awaitingReply, let held = consumer.held { ledger.undecided.insert(held) }
            ledger.log.append("c\(index) vanishes holding \(consumer.held ?? "-")\(consumer.awaitingReply ? " (consume sent)" : "")")
            consumer.client.close(reset: reset)
            consumers[index] = Consumer(client: try node.connect())
        }

        /// Stops the node (SIGKILL or SIGTERM) and starts it again on the same store; every connection dies with it.
        func restart(crash: Bool) throws {
            restarts += 1
            ledger.log.append(crash ? "node killed" : "node restarted")
            if crash {
                crashes += 1
                node.crash()
                ledger.mayReturnOnce.formUnion(ledger.settled)
            } else {
                #expect(node.stop() == 0)
            }
            // What a connection held with a consume outstanding may or may not have been acknowledged; what it held
            // without one comes back.
            for consumer in consumers where consumer.awaitingReply {
                if let held = consumer.held { ledger.undecided.insert(held) }
            }
            node = try startMQNode(directory: directory, extra: extra)
            producers = try (0..<3).map { _ in try node.connect() }
            consumers = try (0..<5).map { _ in Consumer(client: try node.connect()) }
        }

        var sequence = 0
        for step in 1...1200 {
            // A crash, a clean restart and one of either, at fixed points, so every run has both kinds.
            if durable && step % 300 == 0 && step < 1200 {
                try restart(crash: step == 300 || (step == 900 && Bool.random()))
                continue
            }
            switch Int.random(in: 0..<1000) {
            case 0..<350:
                let index = Int.random(in: 0..<producers.count)
                let body = "m-\(sequence)"
                sequence += 1
                ledger.produced.insert(body)
                producers[index].request([("cmd", "produce"), ("mq", "Chaos"), ("id", body)], body: body)
                expectReply(try producers[index].receive(timeout: 5), status: 200)
                ledger.acknowledgedProduces.append(body)
            case 350..<880:
                let index = Int.random(in: 0..<consumers.count)
                if consumers[index].awaitingReply {
                    try settle(index)
                } else {
                    let wait = [0, 10, 30].randomElement()!
                    consumers[index].client.request([("cmd", "consume"), ("mq", "Chaos"), ("timeout", String(wait))])
                    consumers[index].awaitingReply = true
                    if Bool.random() { try settle(index) }
                }
            default:
                try vanish(Int.random(in: 0..<consumers.count), reset: Bool.random())
            }
        }

        // Wind down: every consumer vanishes, then one consumer drains the queue, acknowledging as it goes.
        for index in consumers.indices { try vanish(index, reset: true) }
        let drainer = consumers[0]
        while true {
            drainer.client.request([("cmd", "consume"), ("mq", "Chaos"), ("timeout", "300")])
            drainer.awaitingReply = true
            try settle(0)
            if drainer.held == nil { break }
        }

        let unaccounted = Set(ledger.acknowledgedProduces).subtracting(ledger.settled).subtracting(ledger.undecided)
        #expect(unaccounted.isEmpty, "acknowledged produces lost: \(unaccounted.sorted().prefix(20)) of \(ledger.acknowledgedProduces.count)")
        #expect(ledger.acknowledgedProduces.count > 200 && ledger.deliveries > 200, "the run did work")

        // Drained and acknowledged: a clean restart must not bring anything back.
        guard durable else { return }
        #expect(node.stop() == 0)
        node = try startMQNode(directory: directory, extra: extra)
        let after = try node.connect()
        after.request([("cmd", "consume"), ("mq", "Chaos"), ("timeout", "300")])
        let last = try after.receive(timeout: 5)
        #expect(last.status == 204, "after draining and a clean restart the MQ handed out \(last.bodyString)")
        #expect(restarts == 3 && crashes >= 1)
    }
}
