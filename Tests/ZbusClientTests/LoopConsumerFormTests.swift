import Foundation
import Logging
import Testing
import Zbus
import ZbusTestSupport

/// A loop consumer hands messages as zbus 6 consumers present them (`id` = the producer's id, no `rawid`), or, with
/// `keepsDeliveredForm`, as the node delivered them (`id` = the consume's id, `rawid` = the producer's id); either
/// way the answer reaches the producer with the producer's id, or without one when it sent none.
@Suite("Loop consumer: the form messages are handed in", .blockingIO)
struct LoopConsumerFormTests {
    @Test("the handler sees the producer's id where the form puts it; the answer carries it back", arguments: [false, true])
    func forms(keepsDeliveredForm: Bool) async throws {
        let (embedded, directory) = try await startEmbeddedNode()
        defer { try? FileManager.default.removeItem(at: directory) }
        let producer = try WireClient(port: embedded.address!.port)
        defer { producer.close() }
        producer.request([("cmd", "create_mq"), ("mq_name", "Forms"), ("mq_mode", "1")])
        #expect(try producer.receive().status == 200)
        // Queued before the consumer starts, so it takes them in this order.
        producer.request([("cmd", "produce"), ("mq", "Forms"), ("ack", "0"), ("id", "p-1"), ("x-note", "first")])
        producer.request([("cmd", "produce"), ("mq", "Forms"), ("ack", "0"), ("x-note", "second")])

        let seen = LockedValue<[(id: String?, rawId: String?, note: String?)]>([])
        let consumer = try LoopConsumer(node: embedded.node, mq: "Forms",
                                        options: LoopConsumer.Options(autoCreate: nil, keepsDeliveredForm: keepsDeliveredForm),
                                        logger: Logger(label: "test"))
        consumer.start { request in
            seen.withLock { $0.append((request.id, request.rawId, request.headers["x-note"])) }
            consumer.finish(Message(status: 200, text: "answer to \(request.headers["x-note"] ?? "?")"), routing: request)
        }

        let first = try producer.receive()
        let second = try producer.receive()
        #expect(first.bodyString == "answer to first")
        #expect(first.id == "p-1", "the producer's id comes back")
        #expect(first.mq == "Forms")
        #expect(second.bodyString == "answer to second")
        #expect(second.id == nil, "no id comes back to a producer that sent none")

        let views = seen.withLock { $0 }
        #expect(views.count == 2)
        if keepsDeliveredForm {
            #expect(views[0].rawId == "p-1")
            #expect(views[0].id != "p-1", "id is the consume's")
            #expect(views[1].rawId == nil)
        } else {
            #expect(views[0].id == "p-1")
            #expect(views[0].rawId == nil)
            #expect(views[1].id == nil)
            #expect(views[1].rawId == nil)
        }

        try await consumer.stop().get()
        await embedded.stop()
    }
}
