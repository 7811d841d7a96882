import Foundation
import NIOCore
import Testing
import Zbus
import ZbusTestSupport

/// The kernel's in-process sessions (`Node+InProcess.swift`): real sessions without a socket.
@Suite("Node: in-process sessions", .blockingIO)
struct InProcessSessionTests {
    @Test("connecting to a node that is not running fails with a clear error")
    func notRunning() throws {
        let node = try ZbusNode(store: "/tmp/unused-\(UUID().uuidString)", name: "idle")
        #expect {
            _ = try node.node.connectInProcess(onMessage: { _ in })
        } throws: { error in
            "\(error)" == "node 'idle' is not running: start it (`try await node.start()`) before connecting in-process"
        }
    }

    @Test("a session is registered, stamped like a socket's, and released (in-flight messages redelivered) on close")
    func lifecycle() async throws {
        let (embedded, directory) = try await startEmbeddedNode()
        defer { try? FileManager.default.removeItem(at: directory) }
        let inbox = LockedValue<[Message]>([])
        let closed = LockedValue(0)
        let connection = try embedded.node.connectInProcess(
            onMessage: { message in inbox.withLock { $0.append(message) } },
            onClose: { closed.withLock { $0 += 1 } })
        #expect(connection.isOpen)
        #expect(embedded.node.sessions.session(id: connection.session.id) != nil)

        var test = Message()
        test.cmd = "test"
        test.id = "t1"
        connection.send(test)
        #expect(await eventually { inbox.withLock { $0.first?.bodyString } == "OK" })

        // Stamping: what this session produces carries its session id and `in-process`.
        let raw = try WireClient(port: embedded.address!.port)
        raw.request([("cmd", "create_mq"), ("mq_name", "Local"), ("mq_mode", "1")])
        #expect(try raw.receive().status == 200)
        var produce = Message(method: "POST", body: ByteBuffer(string: "stamped"))
        produce.cmd = "produce"
        produce.mq = "Local"
        produce.id = "p1"
        connection.send(produce)
        #expect(await eventually { inbox.withLock { $0.contains { $0.id == "p1" && $0.status == 200 } } })
        raw.request([("cmd", "consume"), ("mq", "Local"), ("id", "c1"), ("timeout", "5000")])
        let delivered = try raw.receive()
        #expect(delivered.bodyString == "stamped")
        #expect(delivered.sender == connection.session.id)
        #expect(delivered.remoteAddr == "in-process")
        #expect(delivered.server == embedded.address!.description)

        // A message the in-process session holds goes back to the queue when it closes.
        raw.request([("cmd", "produce"), ("mq", "Local"), ("id", "p2")], body: "held")
        #expect(try raw.receive().status == 200)
        var consume = Message()
        consume.cmd = "consume"
        consume.mq = "Local"
        consume.id = "ic1"
        consume.headers["timeout"] = "5000"
        connection.send(consume)
        #expect(await eventually { inbox.withLock { $0.contains { $0.id == "ic1" && $0.bodyString == "held" } } })
        connection.close()
        #expect(await eventually { closed.withLock { $0 } == 1 })
        #expect(!connection.isOpen)
        #expect(embedded.node.sessions.session(id: connection.session.id) == nil)
        raw.request([("cmd", "consume"), ("mq", "Local"), ("id", "c2"), ("timeout", "5000")])
        let redelivered = try raw.receive()
        #expect(redelivered.bodyString == "held", "sessionDidClose reached the mq module")
        connection.send(test)  // dropped, no crash

        // Shutting the node down closes open in-process sessions.
        let other = try embedded.node.connectInProcess(onMessage: { _ in }, onClose: { closed.withLock { $0 += 1 } })
        await embedded.stop()
        #expect(closed.withLock { $0 } == 2)
        #expect(!other.isOpen)
    }
}
