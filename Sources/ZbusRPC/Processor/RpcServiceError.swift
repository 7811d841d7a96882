/// Why a service could not run a request. Sent back as a zbus failure (status 500, `error` and `stackTrace`), with the
/// messages zbus 6's `RpcProcessor` used where it had one.
public enum RpcServiceError: Error, Sendable, CustomStringConvertible {
    /// The request could not be read (not JSON, wrong field types, unknown charset).
    case badRequest(String)
    /// No method of that name in that module.
    case methodNotFound(module: String, method: String)
    /// The method exists, but not with that many parameters.
    case argumentCount(method: String, signatures: [[String]], arguments: [String])
    /// An argument could not be converted to the parameter's type.
    case argumentType(method: String, index: Int, expected: String, found: String, detail: String?)
    /// The result could not be encoded as JSON.
    case resultNotEncodable(method: String, reason: String)
    /// The catalogue of an unknown module was asked for.
    case moduleNotFound(module: String, known: [String])

    /// What went wrong, in one line.
    public var description: String {
        switch self {
        case .badRequest(let reason):
            return "bad request: \(reason)"
        case .methodNotFound(let module, let method):
            return "\(module):\(method) not found, module may not set, or wrong"
        case .argumentCount(let method, let signatures, let arguments):
            let wanted = signatures.map { "\(method)(\($0.joined(separator: ", ")))" }.joined(separator: " or ")
            return "Method:\(wanted), called with \(method)(\(arguments.joined(separator: ", ")))"
        case .argumentType(let method, let index, let expected, let found, let detail):
            return "Method:\(method): argument \(index + 1) must be \(expected), got \(found)" + (detail.map { " (\($0))" } ?? "")
        case .resultNotEncodable(let method, let reason):
            return "Method:\(method): the result cannot be sent as JSON: \(reason)"
        case .moduleNotFound(let module, let known):
            return "module '\(module)' not found; modules: \(known.isEmpty ? "none" : known.joined(separator: ", "))"
        }
    }
}
