import ZbusClient
import ZbusKernel

/// Calls remote methods over any ``MessageInvoker``: MQ-RPC, direct RPC on one connection or through a pool
/// (zbus 6 `RpcInvoker`).
///
/// ```swift
/// let rpc = RpcInvoker(MqInvoker(broker: broker, mq: "Calc"), module: "calc")      // MQ-RPC
/// let direct = RpcInvoker(try MessageClient(address: "127.0.0.1:15557"))            // direct RPC
///
/// let sum = try await rpc.call("plus", 1, 2, as: Int.self)                           // typed: 3
/// let user = try await rpc.call("find", 42, as: User.self)                            // any Decodable
/// let raw = try await rpc.call("echo", "hi")                                          // JSONValue
/// let response = try await rpc.invoke(RpcRequest(module: "calc", method: "plus", params: [1, 2]))
/// ```
///
/// Arguments are any `Encodable` values; results any `Decodable` type. A failure reported by the service throws
/// ``RpcError/remote(module:method:status:message:stackTrace:)``; no answer within ``timeout`` throws
/// ``RpcError/timedOut(module:method:target:after:)`` (10 s by default, as in zbus 6). An invoker is a value: share it
/// freely across tasks.
public struct RpcInvoker: Sendable {
    /// Where calls go.
    public let invoker: any MessageInvoker
    /// The module calls name (`""`: whichever module has the method).
    public var module: String
    /// How calls and answers are written.
    public var codec: any RpcCodec
    /// How long a call waits for its answer unless it says otherwise.
    public var timeout: Duration

    /// Creates an invoker.
    ///
    /// - Parameters:
    ///   - invoker: the transport.
    ///   - module: the module calls name.
    ///   - codec: how calls are written; zbus 6 JSON by default.
    ///   - timeout: the default wait for an answer.
    public init(_ invoker: any MessageInvoker, module: String = "", codec: any RpcCodec = JsonRpcCodec(), timeout: Duration = .seconds(10)) {
        self.invoker = invoker
        self.module = module
        self.codec = codec
        self.timeout = timeout
    }

    /// Direct RPC through `broker`'s connection pool (the broker points at a direct RPC server).
    public init(broker: any Broker, module: String = "", codec: any RpcCodec = JsonRpcCodec(), timeout: Duration = .seconds(10)) {
        self.init(BrokerInvoker(broker: broker), module: module, codec: codec, timeout: timeout)
    }

    /// MQ-RPC: calls go to the service consuming `mq` on `broker`.
    public init(broker: any Broker, mq: String, token: String? = nil, module: String = "", codec: any RpcCodec = JsonRpcCodec(),
                timeout: Duration = .seconds(10)) {
        self.init(MqInvoker(broker: broker, mq: mq, token: token), module: module, codec: codec, timeout: timeout)
    }

    /// Sends `request` and returns the service's response, failure or not.
    ///
    /// - Parameters:
    ///   - request: the call.
    ///   - timeout: the wait for the answer; ``timeout`` by default.
    /// - Throws: ``RpcError`` for everything but a failure the service reported (see ``RpcResponse/isFailure``):
    ///   `timedOut`, `serviceUnavailable`, `transport`, `encoding`, `badResponse`; `CancellationError`.
    public nonisolated(nonsending) func invoke(_ request: RpcRequest, timeout: Duration? = nil) async throws -> RpcResponse {
        try await exchange(request, timeout: timeout).response
    }

    /// Sends `request`; returns the response and the status of the message that carried it.
    private nonisolated(nonsending) func exchange(_ request: RpcRequest, timeout: Duration?) async throws -> (response: RpcResponse, status: Int) {
        let message: Message
        do {
            message = try codec.encodeRequest(request)
        } catch {
            throw RpcError.encoding(module: request.module, method: request.method, reason: "\(error)")
        }
        let wait = timeout ?? self.timeout
        let reply: Message
        do {
            reply = try await invoker.invoke(message, timeout: wait)
        } catch let error as ZbusClientError {
            if case .timedOut = error {
                throw RpcError.timedOut(module: request.module, method: request.method, target: invoker.target, after: wait)
            }
            throw RpcError.transport(module: request.module, method: request.method, target: invoker.target, error: error)
        } catch RpcError.serviceUnavailable(_, _, let target, let status, let reason) {
            throw RpcError.serviceUnavailable(module: request.module, method: request.method, target: target, status: status, reason: reason)
        }
        do {
            return (try codec.decodeResponse(reply), reply.status ?? 200)
        } catch {
            throw RpcError.badResponse(module: request.module, method: request.method, target: invoker.target, reason: "\(error)")
        }
    }

    /// Calls `method` of ``module`` with `params` and returns its result as a `R`.
    ///
    /// - Parameters:
    ///   - method: the method name.
    ///   - params: the arguments, any `Encodable` values.
    ///   - type: the result type.
    ///   - timeout: the wait for the answer; ``timeout`` by default.
    /// - Throws: ``RpcError``: `remote` (the service failed), `timedOut`, `serviceUnavailable`, `transport`,
    ///   `resultType`, ...
    public nonisolated(nonsending) func call<each P: Encodable, R: Decodable>(_ method: String, _ params: repeat each P, as type: R.Type,
                                                       timeout: Duration? = nil) async throws -> R {
        let result = try await callResult(method, try encode(method, repeat each params), timeout: timeout)
        do {
            return try RpcValueCoding.decode(R.self, from: result)
        } catch {
            throw RpcError.resultType(module: module, method: method, expected: error.expected, found: error.found)
        }
    }

    /// Calls `method` of ``module`` with `params` and returns its result as JSON (`null` for a method that returns
    /// nothing).
    ///
    /// - Throws: ``RpcError`` as ``call(_:_:as:timeout:)``.
    @discardableResult
    public nonisolated(nonsending) func call<each P: Encodable>(_ method: String, _ params: repeat each P, timeout: Duration? = nil) async throws -> JSONValue {
        try await callResult(method, try encode(method, repeat each params), timeout: timeout)
    }

    /// The service's method catalogue (of ``module``, or of every module).
    ///
    /// - Throws: ``RpcError``.
    public nonisolated(nonsending) func catalogue(timeout: Duration? = nil) async throws -> JSONValue {
        try await callResult("", [], timeout: timeout)
    }

    private nonisolated(nonsending) func callResult(_ method: String, _ params: [JSONValue], timeout: Duration?) async throws -> JSONValue {
        let (response, status) = try await exchange(RpcRequest(module: module, method: method, params: params), timeout: timeout)
        guard !response.isFailure else {
            throw RpcError.remote(module: module, method: method, status: status, message: response.errorMessage ?? "failed",
                                  stackTrace: response.stackTrace)
        }
        return response.result
    }

    private func encode<each P: Encodable>(_ method: String, _ params: repeat each P) throws(RpcError) -> [JSONValue] {
        var values: [JSONValue] = []
        for param in repeat each params {
            do {
                values.append(try RpcValueCoding.encode(param))
            } catch {
                throw .encoding(module: module, method: method, reason: "argument \(values.count + 1): \(error)")
            }
        }
        return values
    }
}
