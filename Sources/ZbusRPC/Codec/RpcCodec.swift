import ZbusKernel

/// An RPC request as zbus 6 carries it: `{module, method, params, paramTypes, encoding}`.
public struct RpcRequest: Sendable, Equatable {
    /// The module (service interface) name; empty means any.
    public var module: String
    /// The method name; empty asks for the method catalogue.
    public var method: String
    /// The arguments.
    public var params: [JSONValue]
    /// Java canonical parameter type names, when the caller sent them (used to pick an overload).
    public var paramTypes: [String]?
    /// The body charset.
    public var encoding: String

    /// Creates a request.
    public init(module: String = "", method: String, params: [JSONValue] = [], paramTypes: [String]? = nil, encoding: String = "UTF-8") {
        self.module = module
        self.method = method
        self.params = params
        self.paramTypes = paramTypes
        self.encoding = encoding
    }
}

/// An RPC response: a result, or an error with its stack trace text.
public struct RpcResponse: Sendable, Equatable {
    /// The result (JSON `null` when the method returns nothing).
    public var result: JSONValue
    /// The error, when the call failed.
    public var error: JSONValue?
    /// The error's trace text; zbus clients treat a non-null value as failure.
    public var stackTrace: String?
    /// The body charset.
    public var encoding: String

    /// Creates a response.
    public init(result: JSONValue = .null, error: JSONValue? = nil, stackTrace: String? = nil, encoding: String = "UTF-8") {
        self.result = result
        self.error = error
        self.stackTrace = stackTrace
        self.encoding = encoding
    }
}

/// Turns messages into RPC requests and responses and back. Codecs are plugins: a module contributes them to
/// ``ZbusKernel/ExtensionPoint/rpcCodecs`` (`contributions.add(MyCodec(), to: .rpcCodecs)`), YAML picks one per
/// service, and a request may pick one by `content-type`.
public protocol RpcCodec: Sendable {
    /// The name used in YAML (`codec: json`).
    var name: String { get }
    /// The `content-type` values that select this codec on a request.
    var contentTypes: [String] { get }

    /// Reads a request out of a message (service side).
    func decodeRequest(_ message: Message) throws -> RpcRequest
    /// Writes a response as a message (service side); status 200, or 500 for an error.
    func encodeResponse(_ response: RpcResponse) -> Message
    /// Writes a request as a message (caller side).
    func encodeRequest(_ request: RpcRequest) throws -> Message
    /// Reads a response out of a message (caller side).
    func decodeResponse(_ message: Message) throws -> RpcResponse
}

extension ExtensionPoint where Value == any RpcCodec {
    /// The RPC codecs a node offers its RPC services, by ``RpcCodec/name``.
    ///
    /// Declared here, in the RPC library, rather than by the `rpc` module that reads it, so that a module contributing a
    /// codec depends on this library only, never on another plugin.
    public static var rpcCodecs: ExtensionPoint {
        .named("rpc.codecs", noun: "RPC codec", nameOf: { $0.name })
    }
}
