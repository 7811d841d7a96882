import Foundation
import NIOCore
import NIOPosix
import Testing
import Zbus
import ZbusTestSupport

/// Acceptance 4: the other side speaks raw protocol messages, as the 2016 clients sent them, and the Swift client's
/// view is checked.
@Suite("Client: interop with raw zbus 6 peers", .blockingIO)
struct ClientInteropTests {
    @Test("a raw producer's message as a Swift consumer sees it; the Swift route reaches the raw caller as its answer")
    func rawProducerSwiftConsumer() async throws {
        try await withTestNode(.process) { node in
            let raw = try node.wire()
            raw.request([("cmd", "create_mq"), ("mq_name", "Legacy"), ("mq_mode", "1"), ("id", "c1")])
            #expect(try raw.receive().status == 200)
            // An MQ-RPC call as the Java/Python 6.x callers made it: produce, ack 0, their own uuid as id.
            raw.request([("cmd", "produce"), ("mq", "Legacy"), ("ack", "0"), ("id", "6f1c-rpc-1"), ("X-Custom", "Abc")],
                        body: "{\"method\":\"echo\",\"params\":[\"hi\"]}", method: "POST")
            let consumer = Consumer(broker: node.broker, mq: "Legacy")
            let message = try #require(try await consumer.take(timeout: .seconds(5)))
            #expect(message.id == "6f1c-rpc-1", "id := rawid")
            #expect(message.rawId == nil)
            #expect(message.headers["x-custom"] == "Abc")
            #expect(message.mq == "Legacy")
            #expect(message.status == 200)
            #expect(message.remoteAddr?.hasPrefix("127.0.0.1:") == true, "the producer's address")
            let sender = try #require(message.sender)
            #expect(sender.count == 36, "the producer's session UUID")

            var answer = Message(status: 200, body: ByteBuffer(string: "{\"result\":\"hi\"}"))
            answer.encoding = "UTF-8"
            try await consumer.route(answer, to: message)
            let routed = try raw.receive()
            #expect(routed.status == 200)
            #expect(routed.id == "6f1c-rpc-1", "the raw caller matches the answer by its id")
            #expect(routed.bodyString == "{\"result\":\"hi\"}")
            #expect(routed.headers["reply_code"] == nil)
            await consumer.close()
        }
    }

    @Test("a Swift producer's message as a raw consumer sees it: rawid = the Swift id, id = the raw consume's id")
    func swiftProducerRawConsumer() async throws {
        try await withTestNode(.process) { node in
            let producer = Producer(broker: node.broker, mq: "ToLegacy")
            try await producer.createMQ()
            try await producer.send(textMessage("from swift", [("id", "swift-1"), ("topic", "t")]))
            let generated = try await producer.send("no id given")
            let generatedId = try #require(generated.id, "the client gave the produce an id")
            let raw = try node.wire()
            raw.request([("cmd", "consume"), ("mq", "ToLegacy"), ("id", "raw-c1")])
            let first = try raw.receive()
            #expect(first.status == 200)
            #expect(first.rawId == "swift-1")
            #expect(first.id == "raw-c1")
            #expect(first.bodyString == "from swift")
            #expect(first.topic == "t")
            #expect(first.cmd == nil, "cmd and ack are not stored")
            #expect(first.headers["ack"] == nil)
            raw.request([("cmd", "consume"), ("mq", "ToLegacy"), ("id", "raw-c2")])
            let second = try raw.receive()
            #expect(second.rawId == generatedId)
            #expect(second.bodyString == "no id given")
        }
    }

    @Test("a raw 6.x service (reply_code 500, as the Python and C# clients route) answers a Swift caller")
    func rawServiceSwiftCaller() async throws {
        try await withTestNode(.process) { node in
            try await MqAdmin(broker: node.broker).create("PyService")
            let raw = try node.wire()
            raw.request([("cmd", "consume"), ("mq", "PyService"), ("id", "svc-1")])
            let caller = Producer(broker: node.broker, mq: "PyService")
            let call = Task { try await caller.request(textMessage("boom?", [("id", "call-9")]), timeout: .seconds(10)) }
            let box = Unchecked(raw)
            let request = try await onOwnThread { try box.value.receive(timeout: 10) }
            #expect(request.rawId == "call-9")
            let sender = try #require(request.sender)
            raw.request([("cmd", "route"), ("recver", sender), ("id", "call-9"), ("mq", "PyService"), ("ack", "0"),
                         ("reply_code", "500")], body: "{\"error\":\"boom\",\"stack_trace\":\"...\"}")
            let answer = try await call.value
            #expect(answer.status == 500)
            #expect(answer.id == "call-9")
            #expect(answer.bodyString.contains("boom"))
        }
    }
}

/// A scripted node on a real socket, to see exactly what the client sends and to answer out of order.
final class FakeNode: Sendable {
    let channel: any Channel
    let received = LockedValue<[Message]>([])
    var port: Int { channel.localAddress!.port! }

    /// Starts listening; with `encodeReplies` false the handler writes raw `ByteBuffer`s.
    init(encodeReplies: Bool = true, handler: @escaping @Sendable (Message, any Channel, FakeNode) -> Void) async throws {
        let box = LockedValue<FakeNode?>(nil)
        let received = self.received
        channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    try pipeline.addHandler(ByteToMessageHandler(MessageDecoder()))
                    if encodeReplies { try pipeline.addHandler(MessageEncoder()) }
                    try pipeline.addHandler(FakeNodeHandler { message in
                        received.withLock { $0.append(message) }
                        if let node = box.withLock({ $0 }) { handler(message, channel, node) }
                    })
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        box.withLock { $0 = self }
    }

    func close() async { try? await channel.close() }
}

final class FakeNodeHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = Message
    let onMessage: @Sendable (Message) -> Void
    init(_ onMessage: @escaping @Sendable (Message) -> Void) { self.onMessage = onMessage }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) { onMessage(unwrapInboundIn(data)) }
}

@Suite("Client: MessageClient against a scripted node")
struct MessageClientScriptedTests {
    @Test("pipelined requests get their own replies even out of order; an unmatched message goes to onPush")
    func outOfOrderAndPush() async throws {
        let held = LockedValue<[Message]>([])
        let fake = try await FakeNode { message, channel, _ in
            guard message.cmd == "work" else { return }
            let batch: [Message]? = held.withLock { held in
                held.append(message)
                guard held.count == 3 else { return nil }
                defer { held.removeAll() }
                return held
            }
            guard let batch else { return }
            var push = Message(status: 200, body: ByteBuffer(string: "pushed"))
            push.id = "nobody-waits-for-this"
            channel.write(push, promise: nil)
            for request in batch.reversed() { channel.write(request.reply(status: 200, body: "done " + request.bodyString), promise: nil) }
            channel.flush()
        }
        let pushes = LockedValue<[Message]>([])
        let client = try MessageClient(address: "127.0.0.1:\(fake.port)", configuration: quickConfiguration(),
                                       onPush: { message in pushes.withLock { $0.append(message) } })
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<3 {
                group.addTask {
                    var request = textMessage("\(index)")
                    request.cmd = "work"
                    let reply = try await client.send(request)
                    #expect(reply.bodyString == "done \(index)")
                }
            }
            try await group.waitForAll()
        }
        #expect(await eventually { pushes.withLock { $0.count } == 1 })
        #expect(pushes.withLock { $0.first?.bodyString } == "pushed")
        let ids = fake.received.withLock { $0.compactMap(\.id) }
        #expect(Set(ids).count == 3, "each request had its own id: \(ids)")
        await client.close()
        await fake.close()
    }

    @Test("an idle connection sends heartbeats (request line, cmd: heartbeat, an id)")
    func heartbeat() async throws {
        let fake = try await FakeNode { message, channel, _ in
            if message.cmd == "test" { channel.writeAndFlush(message.reply(status: 200, body: "OK"), promise: nil) }
        }
        var configuration = quickConfiguration()
        configuration.heartbeatInterval = .milliseconds(100)
        let client = try MessageClient(address: "127.0.0.1:\(fake.port)", configuration: configuration)
        var test = Message()
        test.cmd = "test"
        #expect(try await client.send(test).bodyString == "OK")
        #expect(await eventually(within: 5) { fake.received.withLock { $0.filter { $0.cmd == "heartbeat" }.count } >= 2 })
        let beat = try #require(fake.received.withLock { $0.first { $0.cmd == "heartbeat" } })
        #expect(beat.uri == "/")
        #expect(beat.id != nil)
        await client.close()
        await fake.close()
    }

    @Test("a reply the client cannot decode closes the connection; the waiting request fails with the reason")
    func malformedReply() async throws {
        let fake = try await FakeNode(encodeReplies: false) { _, channel, _ in
            channel.writeAndFlush(ByteBuffer(string: "NONSENSE\r\nno-colon-here\r\n\r\n"), promise: nil)
        }
        let client = try MessageClient(address: "127.0.0.1:\(fake.port)", configuration: quickConfiguration())
        var test = Message()
        test.cmd = "test"
        await #expect {
            _ = try await client.send(test)
        } throws: { error in
            guard case .connectionClosed(_, let cmd, _, let reason) = error as? ZbusClientError else { return false }
            return cmd == "test" && (reason ?? "").contains("Bad format")
        }
        await client.close()
        await fake.close()
    }
}
