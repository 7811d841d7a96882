import ZbusClient

/// Why an RPC call failed, as its caller sees it. Every case names the method and where the call went.
public enum RpcError: Error, Sendable, CustomStringConvertible {
    /// The service ran the request and reported a failure (status 500, or a Python service's `error`).
    case remote(module: String, method: String, status: Int, message: String, stackTrace: String?)
    /// No answer within the timeout. The service may or may not have run the request.
    case timedOut(module: String, method: String, target: String, after: Duration)
    /// The node refused the call before any service saw it: no consumer on the RPC MQ (`404 MQ(x) Service Down`), no
    /// such MQ, a wrong token, or a full MQ.
    case serviceUnavailable(module: String, method: String, target: String, status: Int, reason: String)
    /// The connection failed (or was closed) before the answer arrived.
    case transport(module: String, method: String, target: String, error: ZbusClientError)
    /// The arguments could not be written (an argument not encodable as JSON, or too many for the codec).
    case encoding(module: String, method: String, reason: String)
    /// The answer could not be read by the codec.
    case badResponse(module: String, method: String, target: String, reason: String)
    /// The result is not of the type asked for.
    case resultType(module: String, method: String, expected: String, found: String)

    /// What went wrong, in one line.
    public var description: String {
        switch self {
        case .remote(let module, let method, let status, let message, _):
            return "\(Self.name(module, method)) failed in the service (\(status)): \(message)"
        case .timedOut(let module, let method, let target, let after):
            return "module(\(module))-method(\(method)) request timeout: no answer from \(target) within \(after)"
                + "; the service may or may not have run it (is a service running? raise the timeout for slow methods)"
        case .serviceUnavailable(let module, let method, let target, let status, let reason):
            return "\(Self.name(module, method)) not delivered by \(target): \(status) \(reason)"
                + (reason.hasSuffix("Service Down") ? " (no service consumes this MQ: start one)" : "")
        case .transport(let module, let method, let target, let error):
            return "\(Self.name(module, method)) via \(target): \(error)"
        case .encoding(let module, let method, let reason):
            return "\(Self.name(module, method)): the call cannot be written: \(reason)"
        case .badResponse(let module, let method, let target, let reason):
            return "\(Self.name(module, method)): the answer from \(target) cannot be read: \(reason)"
        case .resultType(let module, let method, let expected, let found):
            return "\(Self.name(module, method)) returned \(found), which is not \(expected)"
        }
    }

    /// The service's stack trace text, for ``remote(module:method:status:message:stackTrace:)``.
    public var remoteStackTrace: String? {
        if case .remote(_, _, _, _, let stackTrace) = self { return stackTrace }
        return nil
    }

    private static func name(_ module: String, _ method: String) -> String {
        module.isEmpty ? method : "\(module):\(method)"
    }
}
