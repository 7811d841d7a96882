import Foundation
import NIOCore
import Testing
import Zbus
import ZbusTestSupport

/// Acceptance 3: the node restarts under a running consumer and producer; both carry on and no acknowledged message
/// is lost (at-least-once: every produce that returned success is eventually consumed).
@Suite("Client: reconnect", .serialized, .blockingIO(.heavy))
struct ClientReconnectTests {
    @Test("node restarted under a producer and a consumer: both carry on, every acked message is consumed")
    func restartUnderLoad() async throws {
        let directory = ZbusProcess.makeTemporaryDirectory("zbus-reconnect")
        defer { try? FileManager.default.removeItem(at: directory) }
        var process = try startProcessNode(directory: directory)
        let port = process.port
        var configuration = quickConfiguration()
        configuration.connectTimeout = .seconds(10)
        configuration.maximumReconnectDelay = .milliseconds(200)
        let broker = try SingleBroker(address: "127.0.0.1:\(port)", configuration: configuration, poolSize: 2)
        try await MqAdmin(broker: broker).create("Durable")

        let acked = LockedValue<Set<String>>([])
        let consumed = LockedValue<Set<String>>([])
        let failures = LockedValue(0)
        let consumer = Consumer(broker: broker, mq: "Durable",
                                options: .init(pollTimeout: .milliseconds(500), retryDelay: .milliseconds(50)))
        let consuming = Task {
            try await consumer.start(concurrency: 2) { message, _ in
                if let id = message.id { _ = consumed.withLock { $0.insert(id) } }
            }
        }
        let producer = Producer(broker: broker, mq: "Durable")
        let restarted = LockedValue(false)
        let ackedAfterRestart = LockedValue(0)
        let producing = Task {
            var index = 0
            while index < 5000 && ackedAfterRestart.withLock({ $0 }) < 30 {
                let id = "m\(index)"
                let afterRestart = restarted.withLock { $0 }
                do {
                    try await producer.send(textMessage("message \(index)", [("id", id)]))
                    _ = acked.withLock { $0.insert(id) }
                    if afterRestart { ackedAfterRestart.withLock { $0 += 1 } }
                } catch {
                    // Not acknowledged: a connection failure, or the node refusing while it shuts down.
                    failures.withLock { $0 += 1 }
                }
                index += 1
                try await Task.sleep(for: .milliseconds(2))  // Paces the load; asserts nothing.
            }
        }
        #expect(await eventually(within: 30) { acked.withLock { $0.count } >= 20 && consumed.withLock { $0.count } >= 5 },
                "producing and consuming before the restart")
        #expect(process.stop() == 0)
        process = try startProcessNode(directory: directory, listen: "127.0.0.1:\(port)")
        defer { process.cleanUp() }
        restarted.withLock { $0 = true }
        try await producing.value

        let ackedIds = acked.withLock { $0 }
        #expect(ackedAfterRestart.withLock { $0 } >= 30,
                "the producer carried on after the restart (\(failures.withLock { $0 }) sends failed with the connection)")
        let allConsumed = await eventually(within: 30) { consumed.withLock { ackedIds.isSubset(of: $0) } }
        let missing = ackedIds.subtracting(consumed.withLock { $0 })
        #expect(allConsumed, "acked but never consumed: \(missing.sorted())")
        consuming.cancel()
        try await consuming.value
        await consumer.close()
        await broker.close()
    }

    @Test("a client whose node crashed fails waiting requests with connectionClosed and reconnects when it is back")
    func messageClientReconnects() async throws {
        let directory = ZbusProcess.makeTemporaryDirectory("zbus-reconnect")
        defer { try? FileManager.default.removeItem(at: directory) }
        var process = try startProcessNode(directory: directory)
        let port = process.port
        var configuration = quickConfiguration()
        configuration.maximumReconnectDelay = .milliseconds(100)
        let client = try MessageClient(address: "127.0.0.1:\(port)", configuration: configuration)
        var create = Message()
        create.cmd = "create_mq"
        create.headers["mq_name"] = "Q"
        create.headers["mq_mode"] = "1"
        #expect(try await client.send(create).status == 200)
        var consume = Message()
        consume.cmd = "consume"
        consume.mq = "Q"
        let parked = Task { try await client.send(consume, timeout: .seconds(30)) }
        try process.waitForParkedConsumes("Q", count: 1)
        process.crash()
        await #expect {
            _ = try await parked.value
        } throws: { error in
            guard case .connectionClosed(let address, let cmd, _, _) = error as? ZbusClientError else { return false }
            return address == "127.0.0.1:\(port)" && cmd == "consume"
        }
        process = try startProcessNode(directory: directory, listen: "127.0.0.1:\(port)")
        defer { process.cleanUp() }
        var test = Message()
        test.cmd = "test"
        #expect(try await client.send(test).bodyString == "OK")
        #expect(await client.isConnected)
        await client.close()
    }
}
