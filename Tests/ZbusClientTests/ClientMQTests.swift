import Foundation
import NIOCore
import Testing
import Zbus
import ZbusTestSupport

/// Acceptance 1: produce/consume, pub/sub, route round trip, auto-create and timeouts through the client, against the
/// real binary and against an embedded node.
@Suite("Client: MQ through Producer, Consumer and MqAdmin", .blockingIO)
struct ClientMQTests {
    @Test("produce with ack, consume: the consumer sees the producer's id, body and headers; nothing more gives nil",
          arguments: NodeKind.allCases)
    func produceConsume(kind: NodeKind) async throws {
        try await withTestNode(kind) { node in
            let producer = Producer(broker: node.broker, mq: "Orders")
            try await producer.createMQ()
            for index in 1...3 {
                let ack = try await producer.send(textMessage("order \(index)", [("id", "p\(index)"), ("x-custom", "v\(index)")]))
                #expect(ack.status == 200)
                #expect(ack.id == "p\(index)")
                #expect(Int64(ack.bodyString) != nil, "the ack body is the node's time")
            }
            try await producer.sendWithoutAck(textMessage("order 4", [("id", "p4")]))
            let consumer = Consumer(broker: node.broker, mq: "Orders")
            for index in 1...4 {
                let message = try #require(try await consumer.take(timeout: .seconds(5)))
                #expect(message.bodyString == "order \(index)")
                #expect(message.id == "p\(index)", "id := rawid")
                #expect(message.rawId == nil, "rawid removed")
                #expect(message.sender != nil, "sender kept for routing")
                if index < 4 { #expect(message.headers["x-custom"] == "v\(index)") }
            }
            #expect(try await consumer.take(timeout: .milliseconds(200)) == nil, "204 after the wait limit")
            await consumer.close()
            let info = try #require(try await MqAdmin(broker: node.broker).query("Orders"))
            #expect(info.unconsumedMsgCount == 0)
            #expect(info.inFlightMsgCount == 0, "close() acknowledged the last message")
        }
    }

    @Test("a batch is stored in order and every message is acknowledged", arguments: NodeKind.allCases)
    func batch(kind: NodeKind) async throws {
        try await withTestNode(kind) { node in
            let producer = Producer(broker: node.broker, mq: "Batch")
            try await producer.createMQ()
            let results = await producer.sendBatch((0..<50).map { textMessage("b\($0)") })
            #expect(results.count == 50)
            #expect(results.allSatisfy { (try? $0.get())?.status == 200 })
            let consumer = Consumer(broker: node.broker, mq: "Batch")
            for index in 0..<50 {
                #expect(try await consumer.take(timeout: .seconds(5))?.bodyString == "b\(index)")
            }
            await consumer.close()
        }
    }

    @Test("pub/sub: each subscriber gets what its topics match", arguments: NodeKind.allCases)
    func pubSub(kind: NodeKind) async throws {
        try await withTestNode(kind) { node in
            try await MqAdmin(broker: node.broker).create("News", mode: .pubSub)
            let sports = Consumer(broker: node.broker, mq: "News", options: .init(topic: "sports"))
            let everything = Consumer(broker: node.broker, mq: "News", options: .init(topic: "*"))
            // The first consume registers the subscription.
            #expect(try await sports.take(timeout: .milliseconds(50)) == nil)
            #expect(try await everything.take(timeout: .milliseconds(50)) == nil)
            let publisher = Producer(broker: node.broker, mq: "News")
            try await publisher.publish(textMessage("goal"), topic: "sports")
            try await publisher.publish(textMessage("rain"), topic: "weather")
            #expect(try await sports.take(timeout: .seconds(5))?.bodyString == "goal")
            #expect(try await everything.take(timeout: .seconds(5))?.bodyString == "goal")
            #expect(try await everything.take(timeout: .seconds(5))?.bodyString == "rain")
            #expect(try await sports.take(timeout: .milliseconds(100)) == nil, "weather is not for sports")
            await sports.close()
            await everything.close()
        }
    }

    @Test("route round trip: a caller's request reaches a consumer, whose routed answer comes back with the caller's id and status",
          arguments: NodeKind.allCases)
    func routeRoundTrip(kind: NodeKind) async throws {
        try await withTestNode(kind) { node in
            try await MqAdmin(broker: node.broker).create("Echo")
            let service = Consumer(broker: node.broker, mq: "Echo")
            let serving = Task {
                try await service.start { request, consumer in
                    var reply = Message(status: 201, body: ByteBuffer(string: "echo: \(request.bodyString)"))
                    reply.headers["x-served-by"] = "swift"
                    try await consumer.route(reply, to: request)
                }
            }
            let callerBroker = try node.makeBroker()
            let caller = Producer(broker: callerBroker, mq: "Echo")
            for index in 1...3 {
                // A bound for a failing run only: on a loaded two-core machine running the whole suite, 5 s was too short.
                let answer = try await caller.request(textMessage("ping \(index)", [("id", "call-\(index)")]), timeout: .seconds(30))
                #expect(answer.status == 201, "reply_code became the status line")
                #expect(answer.id == "call-\(index)")
                #expect(answer.bodyString == "echo: ping \(index)")
                #expect(answer.headers["x-served-by"] == "swift")
                #expect(answer.headers["reply_code"] == nil)
            }
            serving.cancel()
            try await serving.value
            await service.close()
            await callerBroker.close()
        }
    }

    @Test("a consumer creates a missing MQ (mode 1) and consumes from it; without auto-create it gets 404",
          arguments: NodeKind.allCases)
    func autoCreate(kind: NodeKind) async throws {
        try await withTestNode(kind) { node in
            let admin = MqAdmin(broker: node.broker)
            #expect(try await admin.query("Fresh") == nil)
            let consumer = Consumer(broker: node.broker, mq: "Fresh")
            #expect(try await consumer.take(timeout: .milliseconds(100)) == nil)
            let info = try #require(try await admin.query("Fresh"))
            #expect(info.mode == 1)
            try await Producer(broker: node.broker, mq: "Fresh").send("first")
            #expect(try await consumer.take(timeout: .seconds(5))?.bodyString == "first")
            await consumer.close()

            let strict = Consumer(broker: node.broker, mq: "Missing", options: .init(autoCreate: nil))
            await #expect {
                _ = try await strict.take(timeout: .milliseconds(100))
            } throws: { error in
                guard case .rejected(let cmd, _, let status, let body) = error as? ZbusClientError else { return false }
                return cmd == "consume" && status == 404 && body == "MQ(Missing) Not Found"
            }
            await strict.close()
            await #expect {
                try await Producer(broker: node.broker, mq: "Missing").send("lost")
            } throws: { error in
                guard case .rejected(_, _, let status, _) = error as? ZbusClientError else { return false }
                return status == 404
            }
        }
    }

    @Test("a request that gets no reply times out with a typed error naming the node and the command",
          arguments: NodeKind.allCases)
    func requestTimeout(kind: NodeKind) async throws {
        try await withTestNode(kind) { node in
            try await MqAdmin(broker: node.broker).create("Quiet")
            let client = node.broker.makeClient(onPush: nil)
            var consume = Message()
            consume.cmd = "consume"
            consume.mq = "Quiet"  // no `timeout` header: the node waits for a message forever
            await #expect {
                _ = try await client.send(consume, timeout: .milliseconds(300))
            } throws: { error in
                guard case .timedOut(_, let cmd, _, let after) = error as? ZbusClientError else { return false }
                return cmd == "consume" && after == .milliseconds(300)
                    && "\(error)".contains("no reply from \(client.address) to `consume`")
            }
            await client.close()
        }
    }

    @Test("MqAdmin: create with a token, query, keys, remove", arguments: NodeKind.allCases)
    func admin(kind: NodeKind) async throws {
        try await withTestNode(kind) { node in
            var admin = MqAdmin(broker: node.broker)
            #expect(try await admin.ping() == "OK")
            try await admin.create("Secret", mode: .mq, accessToken: "t0k")
            // A protected MQ is queried, keyed and removed with its token (zbus 6.3 let anyone do it).
            await #expect(throws: ZbusClientError.self) { try await admin.query("Secret") }
            admin.token = "t0k"
            #expect(try await admin.query("Secret")?.queueMode == .mq)
            await #expect {
                try await Producer(broker: node.broker, mq: "Secret").send("no token")
            } throws: { error in
                guard case .rejected(_, let mq, let status, _) = error as? ZbusClientError else { return false }
                return mq == "Secret" && status == 403
            }
            let producer = Producer(broker: node.broker, mq: "Secret", token: "t0k")
            try await producer.send(textMessage("k", [("key", "dup")]))
            await #expect(throws: ZbusClientError.self) { try await producer.send(textMessage("k again", [("key", "dup")])) }
            #expect(try await admin.addKey("other", mq: "Secret") == true)
            #expect(try await admin.addKey("other", mq: "Secret") == false)
            #expect(try await admin.removeKey("other", mq: "Secret") == 1)
            #expect(try await admin.query("Secret")?.unconsumedMsgCount == 1)
            #expect(try await admin.remove("Secret") == true)
            #expect(try await admin.remove("Secret") == false)
            #expect(try await admin.exists("Secret") == false)
        }
    }
}

@Suite("Client: connection errors", .blockingIO)
struct ClientConnectionErrorTests {
    @Test("connecting to a port nobody listens on fails with connectFailed, saying where and why, in one clean line")
    func connectFailed() async throws {
        let port = refusingPort()
        var configuration = quickConfiguration()
        configuration.connectTimeout = .milliseconds(300)
        let client = try MessageClient(address: "127.0.0.1:\(port)", configuration: configuration)
        var test = Message()
        test.cmd = "test"
        await #expect {
            _ = try await client.send(test)
        } throws: { error in
            guard case .connectFailed(let address, _) = error as? ZbusClientError else { return false }
            // The system's reason once, without NIO's stray parenthesis before `(errno N)`.
            let text = "\(error)"
            return address == "127.0.0.1:\(port)"
                && text.hasPrefix("cannot connect to zbus at 127.0.0.1:\(port): 127.0.0.1:\(port): ")
                && text.contains("\(ErrorText.reason(errno: ECONNREFUSED)) (errno \(ECONNREFUSED)) (is the node running")
                && !text.contains(") (errno")
        }
        await client.close()
        await #expect {
            _ = try await client.send(test)
        } throws: { error in
            guard case .clientClosed = error as? ZbusClientError else { return false }
            return true
        }
    }

    @Test("addresses: one node, a tracker list, garbage")
    func addresses() throws {
        #expect(try BrokerAddress(parsing: "127.0.0.1:15555") == .single(HostAndPort(host: "127.0.0.1", port: 15555)))
        #expect(try BrokerAddress(parsing: "h1:16666;h2:16667")
            == .trackers([HostAndPort(host: "h1", port: 16666), HostAndPort(host: "h2", port: 16667)]))
        #expect(try BrokerAddress(parsing: "[h1:16666]") == .trackers([HostAndPort(host: "h1", port: 16666)]))
        #expect(throws: ZbusClientError.self) { try BrokerAddress(parsing: "nonsense") }
        // Never a fixed port such as 15555: a developer's own node may listen there.
        let address = refusingAddress()
        let broker = try ZbusBroker.connect(address)
        #expect(broker.address == address)
    }

    @Test("remove_mq on an embedded node lets go of the MQ's files at once, even on event loops that go idle")
    func removeReleasesFiles() async throws {
        try await withTestNode(.embedded) { node in
            // A name no other test uses: the check below looks at every file this process holds open.
            let name = "Gone" + UUID().uuidString.prefix(8)  // also in the path of its removed directory
            // Producers on several TCP connections, so that every event loop of the node looks the MQ up.
            let tcp = try SingleBroker(address: "127.0.0.1:\(node.port)", configuration: quickConfiguration(), poolSize: 4)
            let producer = Producer(broker: tcp, mq: name)
            try await producer.createMQ()
            for index in 0..<40 { try await producer.send(textMessage("m\(index)")) }
            #expect(!openFiles(containing: name).isEmpty, "the MQ's segment, cursor and directory are open")
            await tcp.close()

            let admin = try SingleBroker(address: "127.0.0.1:\(node.port)", configuration: quickConfiguration(), poolSize: 1)
            #expect(try await MqAdmin(broker: admin).remove(name))
            await admin.close()
            // Nothing else reaches the node now: a file still open would stay open until some later request.
            #expect(await eventually(within: 5) { openFiles(containing: name).isEmpty },
                    "still open: \(openFiles(containing: name))")
        }
    }
}

/// The targets of this process's open file descriptors that contain `fragment`.
private func openFiles(containing fragment: String) -> [String] {
    let directory = "/proc/self/fd"
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
    return entries.compactMap { try? FileManager.default.destinationOfSymbolicLink(atPath: directory + "/" + $0) }
        .filter { $0.contains(fragment) }
}
