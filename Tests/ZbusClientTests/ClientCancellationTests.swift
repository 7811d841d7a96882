import Foundation
import NIOCore
import Testing
import Zbus
import ZbusTestSupport

/// Acceptance 2: a task cancelled inside `take()` leaves nothing behind that could swallow the next message.
@Suite("Client: cancellation", .blockingIO)
struct ClientCancellationTests {
    /// Waits until the node shows `count` consumes parked on `mq` (polled: a parked consume sends nothing).
    private func parkedConsumes(_ admin: MqAdmin, _ mq: String, count: Int) async throws -> Bool {
        try await eventually { (try await admin.query(mq)?.consumerInfoList?.count ?? 0) == count }
    }

    @Test("take() cancelled while its consume is parked: the next take() gets the next message", arguments: NodeKind.allCases)
    func cancelledTake(kind: NodeKind) async throws {
        try await withTestNode(kind) { node in
            let admin = MqAdmin(broker: node.broker)
            try await admin.create("Jobs")
            let consumer = Consumer(broker: node.broker, mq: "Jobs")
            let waiting = Task { try await consumer.take(timeout: .seconds(30)) }
            #expect(try await parkedConsumes(admin, "Jobs", count: 1), "the consume is parked on the node")
            waiting.cancel()
            await #expect(throws: CancellationError.self) { _ = try await waiting.value }

            // The message arrives while nobody waits: it goes to the consume still parked, and from there to the
            // next take() instead of being lost.
            let producer = Producer(broker: node.broker, mq: "Jobs")
            try await producer.send(textMessage("job 1", [("id", "j1")]))
            try await producer.send(textMessage("job 2", [("id", "j2")]))
            let first = try #require(try await consumer.take(timeout: .seconds(5)))
            #expect(first.bodyString == "job 1")
            #expect(first.id == "j1")
            #expect(try await consumer.take(timeout: .seconds(5))?.bodyString == "job 2")
            #expect(try await consumer.take(timeout: .milliseconds(100)) == nil)
            await consumer.close()
            #expect(try await admin.query("Jobs")?.inFlightMsgCount == 0)
        }
    }

    @Test("take() cancelled before its consume left: nothing is parked twice, the next take() works", arguments: NodeKind.allCases)
    func cancelledImmediately(kind: NodeKind) async throws {
        try await withTestNode(kind) { node in
            try await MqAdmin(broker: node.broker).create("Now")
            let consumer = Consumer(broker: node.broker, mq: "Now")
            let task = Task {
                withUnsafeCurrentTask { $0?.cancel() }
                return try await consumer.take(timeout: .seconds(30))
            }
            await #expect(throws: CancellationError.self) { _ = try await task.value }
            try await Producer(broker: node.broker, mq: "Now").send("n1")
            #expect(try await consumer.take(timeout: .seconds(5))?.bodyString == "n1")
            await consumer.close()
        }
    }

    @Test("a take() with a short limit after a cancelled long one returns nil at its own limit and loses nothing",
          arguments: NodeKind.allCases)
    func shortTakeAfterLongCancelled(kind: NodeKind) async throws {
        try await withTestNode(kind) { node in
            let admin = MqAdmin(broker: node.broker)
            try await admin.create("Later")
            let consumer = Consumer(broker: node.broker, mq: "Later")
            let waiting = Task { try await consumer.take(timeout: .seconds(30)) }
            #expect(try await parkedConsumes(admin, "Later", count: 1))
            waiting.cancel()
            _ = try? await waiting.value
            #expect(try await consumer.take(timeout: .milliseconds(100)) == nil, "nothing yet: its own limit applies")
            try await Producer(broker: node.broker, mq: "Later").send("late")
            #expect(try await consumer.take(timeout: .seconds(5))?.bodyString == "late")
            await consumer.close()
        }
    }

    @Test("a second request with the id of one still waiting is refused; the first still gets its own reply",
          .timeLimit(.minutes(1)), arguments: NodeKind.allCases)
    func duplicateId(kind: NodeKind) async throws {
        try await withTestNode(kind) { node in
            let admin = MqAdmin(broker: node.broker)
            try await admin.create("Dup")
            let client = node.broker.makeClient(onPush: nil)
            var consume = Message()
            consume.cmd = "consume"
            consume.mq = "Dup"
            consume.id = "same-id"
            // Long enough to be still waiting when the second request goes out, even on a loaded machine.
            consume.headers["timeout"] = "3000"
            let first = Task { try await client.send(consume) }
            #expect(try await parkedConsumes(admin, "Dup", count: 1), "the first request is out and waiting")
            var test = Message()
            test.cmd = "test"
            test.id = "same-id"
            await #expect(throws: ZbusClientError.self) { _ = try await client.send(test) }
            #expect(try await first.value.status == 204, "the waiting request keeps its place")
            await client.close()
        }
    }

    @Test("cancelling a request abandons it: a later reply with its id is not mistaken for another request's")
    func cancelledSend() async throws {
        try await withTestNode(.process) { node in
            let admin = MqAdmin(broker: node.broker)
            try await admin.create("Idle")
            let client = node.broker.makeClient(onPush: nil)
            var consume = Message()
            consume.cmd = "consume"
            consume.mq = "Idle"
            // Long enough that the cancellation always comes first, even on a loaded machine.
            consume.headers["timeout"] = "3000"
            let task = Task { try await client.send(consume) }
            #expect(try await parkedConsumes(admin, "Idle", count: 1), "the consume is out and parked")
            task.cancel()
            await #expect(throws: CancellationError.self) { _ = try await task.value }
            var test = Message()
            test.cmd = "test"
            #expect(try await client.send(test).bodyString == "OK")
            // The abandoned consume's 204: once the node has let go of the consume it has sent it, so it reaches the
            // client before the answer to the next request on the same connection, which must not take it.
            #expect(try await parkedConsumes(admin, "Idle", count: 0), "the consume's wait limit passed")
            #expect(try await client.send(test).bodyString == "OK")
            await client.close()
        }
    }
}
