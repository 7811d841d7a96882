import NIOCore

/// Produces messages to one MQ.
///
/// ```swift
/// let producer = Producer(broker: broker, mq: "Orders")
/// try await producer.createMQ()                         // explicit, as in zbus 6
/// try await producer.send("order 42")                   // returns once the node has stored it
/// try await producer.sendWithoutAck(Message(text: "fire and forget"))
/// ```
///
/// With an acknowledgement, ``send(_:timeout:)`` returns only once the node answered 200 (the message is stored, as
/// durable as the node's fsync policy makes it); any other outcome throws, so success is never reported for a message
/// the node did not take. A lightweight value: create one per MQ wherever convenient.
public struct Producer: Sendable {
    /// Where messages go.
    public let broker: any Broker
    /// The target MQ.
    public let mq: String
    /// The MQ's access token, if it has one.
    public var token: String?
    /// How many times a send is retried when the connection failed. A retry after the request was written
    /// (``ZbusClientError/connectionClosed(address:cmd:id:reason:)``, ``ZbusClientError/timedOut(address:cmd:id:after:)``)
    /// can store the message twice, which at-least-once consumers must tolerate anyway; 0 (the default) never retries.
    public var retries: Int

    /// Creates a producer for `mq`.
    public init(broker: any Broker, mq: String, token: String? = nil, retries: Int = 0) {
        self.broker = broker
        self.mq = mq
        self.token = token
        self.retries = retries
    }

    /// Creates the MQ if it does not exist (a zbus 6 producer never creates implicitly). The `create_mq` presents
    /// ``token``, which under the node's `auth` section must grant `admin` on the name.
    ///
    /// - Parameter mode: its mode bits; a plain durable queue by default.
    public func createMQ(mode: QueueMode = .mq, accessToken: String? = nil) async throws {
        try await MqAdmin(broker: broker, token: token).create(mq, mode: mode, accessToken: accessToken)
    }

    /// Sends `message` and waits for the node's acknowledgement.
    ///
    /// `mq`, `token` and `cmd` are set for you; `id`, `topic`, `key` and any other header are kept (the consumer sees
    /// them; the `id` is also what a routed reply carries back).
    ///
    /// - Returns: the acknowledgement (status 200, body = the node's time in milliseconds).
    /// - Throws: ``ZbusClientError/rejected(cmd:mq:status:body:)`` for 404 (no such MQ, or an RPC MQ with no consumer),
    ///   403 (token), 406 (duplicate `key`), 429 (MQ full), 500 (store failure); a connection error otherwise.
    @discardableResult
    public nonisolated(nonsending) func send(_ message: consuming Message, timeout: Duration? = nil) async throws -> Message {
        let request = prepared(consume message, ack: true)
        let reply = try await withRetries { try await broker.send(request, timeout: timeout) }
        guard reply.status == 200 else {
            throw ZbusClientError.rejected(cmd: "produce", mq: mq, status: reply.status ?? 0, body: reply.bodyString)
        }
        return reply
    }

    /// Sends a text body with optional headers (`topic`, `id`, custom ones) and waits for the acknowledgement.
    @discardableResult
    public nonisolated(nonsending) func send(_ body: String, headers: [(String, String)] = [], timeout: Duration? = nil) async throws -> Message {
        try await send(Message(text: body, headers: headers), timeout: timeout)
    }

    /// Publishes `message` under `topic` (for a pub/sub MQ) and waits for the acknowledgement.
    @discardableResult
    public nonisolated(nonsending) func publish(_ message: consuming Message, topic: String, timeout: Duration? = nil) async throws -> Message {
        message.topic = topic
        return try await send(consume message, timeout: timeout)
    }

    /// Sends `message` with `ack: 0`: the node sends nothing back, so this returns once the message is written.
    /// Faster, but a message can be lost with the connection without anyone knowing.
    public nonisolated(nonsending) func sendWithoutAck(_ message: consuming Message) async throws {
        let request = prepared(consume message, ack: false)
        try await withRetries { try await broker.sendOneWay(request) }
    }

    /// Sends `message` with `ack: 0` and waits for the answer a consumer routes back with the same `id` (MQ-RPC).
    ///
    /// - Returns: the routed reply; its status is what the consumer set (`reply_code`).
    public nonisolated(nonsending) func request(_ message: consuming Message, timeout: Duration? = nil) async throws -> Message {
        try await broker.send(prepared(consume message, ack: false), timeout: timeout)
    }

    /// Sends every message in order on one connection, pipelined (no waiting between them), then waits for each
    /// acknowledgement. The node stores them in this order. Failed messages are not retried.
    ///
    /// - Returns: one result per message, in order: the acknowledgement, or why that message was not acknowledged.
    public func sendBatch(_ messages: [Message], timeout: Duration? = nil) async -> [Result<Message, any Error>] {
        let client = broker.pooledClient()
        let replies = messages.map { client.submit(prepared($0, ack: true), timeout: timeout) }
        var results: [Result<Message, any Error>] = []
        results.reserveCapacity(replies.count)
        for reply in replies {
            do {
                let answer = try await client.awaitReply(reply)
                if answer.status == 200 {
                    results.append(.success(answer))
                } else {
                    results.append(.failure(ZbusClientError.rejected(cmd: "produce", mq: mq, status: answer.status ?? 0, body: answer.bodyString)))
                }
            } catch {
                results.append(.failure(error))
            }
        }
        return results
    }

    /// The message as a `produce` to this MQ. It is taken, not copied: every copy of a message is a retain and a
    /// release of each of its parts.
    private func prepared(_ message: consuming Message, ack: Bool) -> Message {
        // Room for what is added here (cmd, mq, id, token), so the header array grows once at most.
        message.headers.reserveCapacity(message.headers.count + 4)
        message.cmd = "produce"
        message.mq = mq
        if message.id == nil { message.id = RequestId.next() }
        if let token { message.token = token }
        // An absent `ack` means "reply" to every zbus node; only the opt-out travels.
        if ack { message.headers.removeValue(lowercased: HeaderName.ack) } else { message.ack = false }
        return consume message
    }

    private nonisolated(nonsending) func withRetries<T>(_ body: nonisolated(nonsending) () async throws -> T) async throws -> T {
        var attempt = 0
        while true {
            do {
                return try await body()
            } catch let error as ZbusClientError where error.isConnectionFailure && attempt < retries {
                attempt += 1
            }
        }
    }
}
