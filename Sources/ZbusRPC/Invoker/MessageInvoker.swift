import ZbusClient
import ZbusKernel

/// Sends a request message and returns the message that answers it: what an ``RpcInvoker`` runs on (zbus 6
/// `MessageInvoker`).
///
/// | invoker | RPC style |
/// |---|---|
/// | ``MessageClient`` | direct RPC, one connection |
/// | ``SingleBroker``, ``InProcessBroker``, ``BrokerInvoker`` | direct RPC through a connection pool |
/// | ``MqInvoker`` | MQ-RPC: produce with `ack: 0`, wait for the answer routed back |
///
/// High-availability direct RPC (zbus 6 `HaInvoker`) is one more conformance: it sets `mq` to the entry id under which
/// direct servers registered with the trackers and sends through the HA broker, which picks a server for that entry.
public protocol MessageInvoker: Sendable {
    /// Where requests go, for error messages (`127.0.0.1:15555`, `MQ 'Calc' at 127.0.0.1:15555`).
    var target: String { get }

    /// Sends `request` and returns its answer (the message carrying its `id`).
    ///
    /// - Parameters:
    ///   - request: the call as the codec wrote it.
    ///   - timeout: how long to wait for the answer.
    /// - Throws: ``ZbusClientError`` (connection failures, ``ZbusClientError/timedOut(address:cmd:id:after:)``), or
    ///   ``RpcError`` when the node refused the call.
    ///
    /// The request is consumed: an invoker that adds headers (``MqInvoker``) then does so without copying it.
    nonisolated(nonsending) func invoke(_ request: consuming Message, timeout: Duration) async throws -> Message
}

extension MessageClient: MessageInvoker {
    /// The node's address.
    public var target: String { address }

    /// Sends `request` on this connection and waits for its answer.
    public nonisolated(nonsending) func invoke(_ request: Message, timeout: Duration) async throws -> Message {
        try await send(request, timeout: timeout)
    }
}

extension SingleBroker: MessageInvoker {
    /// The node's address.
    public var target: String { address }

    /// Sends `request` on a pooled connection and waits for its answer.
    public nonisolated(nonsending) func invoke(_ request: Message, timeout: Duration) async throws -> Message {
        try await send(request, timeout: timeout)
    }
}

extension ConnectorBroker: MessageInvoker {
    /// `in-process:NODE`.
    public var target: String { address }

    /// Sends `request` on a pooled in-process session and waits for its answer.
    public nonisolated(nonsending) func invoke(_ request: Message, timeout: Duration) async throws -> Message {
        try await send(request, timeout: timeout)
    }
}

/// Any ``Broker`` as a message invoker (direct RPC through its pool).
public struct BrokerInvoker: MessageInvoker {
    /// The broker requests go through.
    public let broker: any Broker

    /// Wraps `broker`.
    public init(broker: any Broker) {
        self.broker = broker
    }

    /// The broker's address.
    public var target: String { broker.address }

    /// Sends `request` on a pooled connection and waits for its answer.
    public nonisolated(nonsending) func invoke(_ request: Message, timeout: Duration) async throws -> Message {
        try await broker.send(request, timeout: timeout)
    }
}

/// MQ-RPC: each call is produced to an MQ with `ack: 0`, and the answer a service routes back with the call's `id` is
/// the result (zbus 6 `MqInvoker`).
///
/// ```swift
/// let rpc = RpcInvoker(MqInvoker(broker: broker, mq: "Calc"), module: "calc")
/// let sum = try await rpc.call("plus", 1, 2, as: Int.self)
/// ```
///
/// When no service consumes the MQ, the node answers at once (`404 MQ(Calc) Service Down`) and the call fails with
/// ``RpcError/serviceUnavailable(module:method:target:status:reason:)``.
public struct MqInvoker: MessageInvoker {
    /// Where the MQ lives.
    public let broker: any Broker
    /// The service's MQ.
    public let mq: String
    /// The MQ's access token, if it has one.
    public var token: String?

    /// Creates an invoker for the service consuming `mq`.
    public init(broker: any Broker, mq: String, token: String? = nil) {
        self.broker = broker
        self.mq = mq
        self.token = token
    }

    /// `MQ 'NAME' at ADDRESS`.
    public var target: String { "MQ '\(mq)' at \(broker.address)" }

    /// Produces `request` with `ack: 0` and waits for the answer routed back.
    ///
    /// - Throws: ``RpcError/serviceUnavailable(module:method:target:status:reason:)`` when the node refuses the produce
    ///   (no consumer, no MQ, wrong token, MQ full); ``ZbusClientError`` for connection failures and timeouts.
    public nonisolated(nonsending) func invoke(_ request: consuming Message, timeout: Duration) async throws -> Message {
        var request = request
        if request.id == nil { request.id = RequestId.next() }
        request.cmd = "produce"
        request.mq = mq
        request.ack = false
        if let token { request.token = token }
        let reply = try await broker.send(request, timeout: timeout)
        if let status = reply.status, status == 403 || status == 404 || status == 429 {
            let body = reply.bodyString
            if body.hasPrefix("MQ(") {
                throw RpcError.serviceUnavailable(module: "", method: "", target: target, status: status, reason: body)
            }
        }
        return reply
    }
}
