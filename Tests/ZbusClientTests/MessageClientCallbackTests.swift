import NIOCore
import Testing
import Zbus
import ZbusTestSupport
import ZbusClient

/// The loop-driven side of the client core: `send(_:timeout:onReply:)`, `post(_:)`, and `ConsumeReply`, which MQ-RPC
/// workers are built on.
@Suite("Client: callbacks on the client's event loop")
struct MessageClientCallbackTests {
    /// Sends `first`, and from each callback the next request, until `next` returns nil; returns every outcome.
    private func chain(_ client: MessageClient, _ first: Message, next: @escaping @Sendable (Result<Message, any Error>, Int) -> Message?)
        async -> [Result<Message, any Error>]
    {
        await withCheckedContinuation { continuation in
            let outcomes = LockedValue<[Result<Message, any Error>]>([])
            @Sendable func send(_ request: Message) {
                client.send(request) { result in
                    #expect(client.eventLoop.inEventLoop, "callbacks run on the client's event loop")
                    let count = outcomes.withLock { $0.append(result); return $0.count }
                    if let following = next(result, count) { send(following) } else { continuation.resume(returning: outcomes.withLock { $0 }) }
                }
            }
            send(first)
        }
    }

    private func request(_ cmd: String, _ body: String = "") -> Message {
        var message = Message(method: "POST", headers: Headers(), body: ByteBuffer(string: body))
        message.cmd = cmd
        return message
    }

    @Test("each reply reaches its callback on the client's loop, where the next request can be sent at once")
    func callbackChain() async throws {
        let fake = try await FakeNode { message, channel, _ in
            channel.writeAndFlush(message.reply(status: 200, body: "echo " + message.bodyString), promise: nil)
        }
        let client = try MessageClient(address: "127.0.0.1:\(fake.port)", configuration: quickConfiguration())
        let outcomes = await chain(client, request("ping", "0")) { _, count in count < 5 ? self.request("ping", "\(count)") : nil }
        #expect(try outcomes.map { try $0.get().bodyString } == ["echo 0", "echo 1", "echo 2", "echo 3", "echo 4"])
        await client.close()
        await fake.close()
    }

    @Test("a callback that sends again after its connection broke waits for the next connection, not the dead one")
    func resendAfterLostConnection() async throws {
        let pings = LockedValue(0)
        let fake = try await FakeNode { message, channel, _ in
            // The first request's connection is closed unanswered; later ones are answered.
            if pings.withLock({ $0 += 1; return $0 }) == 1 {
                channel.close(promise: nil)
            } else {
                channel.writeAndFlush(message.reply(status: 200, body: "OK"), promise: nil)
            }
        }
        var configuration = quickConfiguration()
        configuration.reconnectBackoff = Backoff(initial: .milliseconds(10), maximum: .milliseconds(50))
        let client = try MessageClient(address: "127.0.0.1:\(fake.port)", configuration: configuration)
        let outcomes = await chain(client, request("ping")) { result, _ in
            if case .failure(let error) = result, case .connectionClosed? = error as? ZbusClientError { return self.request("ping") }
            return nil
        }
        #expect(outcomes.count == 2)
        #expect(try outcomes.last?.get().bodyString == "OK", "answered on the new connection: \(outcomes)")
        await client.close()
        await fake.close()
    }

    @Test("no reply within the timeout: the callback gets timedOut; after close, clientClosed at once")
    func timeoutAndClosed() async throws {
        let fake = try await FakeNode { _, _, _ in }  // never answers
        let client = try MessageClient(address: "127.0.0.1:\(fake.port)", configuration: quickConfiguration())
        let outcome = await withCheckedContinuation { continuation in
            client.send(request("silent"), timeout: .milliseconds(200)) { continuation.resume(returning: $0) }
        }
        guard case .failure(let error) = outcome, case .timedOut(_, let cmd, _, _)? = error as? ZbusClientError else {
            Issue.record("expected timedOut, got \(outcome)")
            return
        }
        #expect(cmd == "silent")
        await client.close()
        let closed = await withCheckedContinuation { continuation in
            client.send(request("late")) { continuation.resume(returning: $0) }
        }
        guard case .failure(let closedError) = closed, case .clientClosed? = closedError as? ZbusClientError else {
            Issue.record("expected clientClosed, got \(closed)")
            return
        }
        await fake.close()
    }

    @Test("post writes a one-way message without waiting, also before the first connection, and keeps the order")
    func post() async throws {
        let fake = try await FakeNode { message, channel, _ in
            if message.cmd == "sync" { channel.writeAndFlush(message.reply(status: 200, body: "OK"), promise: nil) }
        }
        let client = try MessageClient(address: "127.0.0.1:\(fake.port)", configuration: quickConfiguration())
        var note = request("note", "first")
        note.id = "note-1"
        client.post(note)  // no connection yet: it waits for the one this opens
        client.post(request("note", "second"))
        #expect(try await client.send(request("sync")).bodyString == "OK")
        let received = fake.received.withLock { $0.map { "\($0.cmd ?? "-") \($0.bodyString)" } }
        #expect(received == ["note first", "note second", "sync "])
        #expect(fake.received.withLock { $0.first?.id } == "note-1")
        #expect(fake.received.withLock { $0[1].id } != nil, "a one-way message gets an id like any other")
        await client.close()
        await fake.close()
    }

    @Test("ConsumeReply tells a delivered message from the node's own answers to a consume")
    func consumeReplies() {
        func reply(_ status: Int, _ body: String, rawId: String? = nil) -> Message {
            var message = Message(status: status, body: ByteBuffer(string: body))
            message.id = "consume-1"
            if let rawId { message.headers[HeaderName.rawId] = rawId }
            return message
        }
        guard case .nothing = ConsumeReply(reply(204, "")) else { Issue.record("204 is nothing"); return }
        guard case .notFound(let missing) = ConsumeReply(reply(404, "MQ(Calc) Not Found")) else { Issue.record("404 is notFound"); return }
        #expect(missing == "MQ(Calc) Not Found")
        guard case .refused(403, _) = ConsumeReply(reply(403, "MQ(Calc) forbidden")) else { Issue.record("403 is refused"); return }
        guard case .refused(400, _) = ConsumeReply(reply(400, "Bad format: mq required")) else { Issue.record("400 is refused"); return }
        // Access control's refusal says what was missing after the 6.3 text; it is still the node's refusal, not a
        // message to hand to the consumer's handler.
        let named = "MQ(Calc) forbidden: consume needs the consume permission on 'Calc' (no token (anonymous) lacks it)"
        guard case .refused(403, named) = ConsumeReply(reply(403, named)) else { Issue.record("an access-control 403 is refused"); return }
        guard case .message = ConsumeReply(reply(403, "forbidden, says the producer")) else { Issue.record("another 403 is a message"); return }
        // A produced message whose own status says 404 or 204 is a message: it carries the producer's id in rawid.
        var delivered = reply(404, "MQ(x) Not Found", rawId: "producer-7")
        delivered.sender = "session-3"
        guard case .message(let message) = ConsumeReply(delivered) else { Issue.record("a message with rawid is a message"); return }
        #expect(message.id == "producer-7")
        #expect(message.headers[HeaderName.rawId] == nil)
        #expect(message.sender == "session-3")
        guard case .message = ConsumeReply(reply(204, "not empty")) else { Issue.record("a 204 with a body is a message"); return }
    }

    @Test("ConsumeReply's rebuilt header block (for in-process deliveries) is, in order, the block edited in place", arguments: [
        [("mq", "Q"), ("rawid", "p-1"), ("x-a", "1"), ("id", "c-1"), ("sender", "s")],
        [("id", "c-1"), ("mq", "Q"), ("rawid", "p-1")],
        [("mq", "Q"), ("rawid", "p-1"), ("x-a", "1")],
        [("mq", "Q"), ("id", "c-1"), ("x-a", "1")],
    ])
    func consumeReplyHeaderOrder(fields: [(String, String)]) {
        var delivered = Message(status: 200)
        for (name, value) in fields { delivered.headers.append(lowercased: name, value) }
        guard case .message(let edited) = ConsumeReply(delivered, presenting: .editInPlace),
              case .message(let rebuilt) = ConsumeReply(delivered, presenting: .rebuild),
              case .message(let kept) = ConsumeReply(delivered, presenting: .delivered) else { Issue.record("not a message"); return }
        #expect(rebuilt.headers.pairs.map { "\($0.name)=\($0.value)" } == edited.headers.pairs.map { "\($0.name)=\($0.value)" })
        #expect(edited.id == delivered.rawId)
        #expect(edited.rawId == nil)
        #expect(kept.headers.pairs.map { "\($0.name)=\($0.value)" } == delivered.headers.pairs.map { "\($0.name)=\($0.value)" })
    }
}
