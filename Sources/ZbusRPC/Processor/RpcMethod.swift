import ZbusKernel

/// One method a service offers: its module, name, signature and body.
public struct RpcMethod: Sendable {
    /// How the body runs.
    enum Body: Sendable {
        /// Runs where the request arrived (an event loop), so it must be short and must not block.
        case inline(@Sendable ([JSONValue]) throws -> JSONValue)
        /// Runs on Swift's concurrency pool.
        case async(@Sendable ([JSONValue]) async throws -> JSONValue)
    }

    /// The module it was registered in.
    public let module: String
    /// The method name.
    public let name: String
    /// The Swift type names of its parameters.
    public let parameterTypes: [String]
    /// The Swift type name of its result (`Void` when it returns nothing).
    public let returnType: String
    /// Whether it runs on the connection's event loop (a synchronous method) rather than in a task.
    public var runsInline: Bool {
        if case .inline = body { return true }
        return false
    }

    /// Whether it takes any number of arguments (a raw method).
    public var isVariadic: Bool { variadic }

    let variadic: Bool
    let body: Body

    init(module: String, name: String, parameterTypes: [String], returnType: String, variadic: Bool, body: Body) {
        self.module = module
        self.name = name
        self.parameterTypes = parameterTypes
        self.returnType = returnType
        self.variadic = variadic
        self.body = body
    }

    /// The number of parameters (`-1` for a variadic method).
    public var arity: Int { variadic ? -1 : parameterTypes.count }

    /// Runs the method with `arguments` (already counted) and returns the response; thrown errors become failures.
    public nonisolated(nonsending) func call(_ arguments: [JSONValue]) async -> RpcResponse {
        do {
            switch body {
            case .inline(let run): return RpcResponse(result: try run(arguments))
            case .async(let run): return RpcResponse(result: try await run(arguments))
            }
        } catch {
            return .failure(error)
        }
    }

    /// Runs a synchronous method right here; `nil` for an `async` one.
    func callInline(_ arguments: [JSONValue]) -> RpcResponse? {
        guard case .inline(let run) = body else { return nil }
        do {
            return RpcResponse(result: try run(arguments))
        } catch {
            return .failure(error)
        }
    }
}

/// Reads a method's arguments in order, converting each to its parameter type.
final class ArgumentReader {
    private let arguments: [JSONValue]
    private let method: String
    private var index = 0

    init(_ arguments: [JSONValue], method: String) {
        self.arguments = arguments
        self.method = method
    }

    func next<T: Decodable>(_ type: T.Type) throws(RpcServiceError) -> T {
        defer { index += 1 }
        let value = index < arguments.count ? arguments[index] : .null
        do {
            return try RpcValueCoding.decode(T.self, from: value)
        } catch {
            throw .argumentType(method: method, index: index, expected: error.expected, found: error.found, detail: error.detail)
        }
    }
}

/// The Swift type names of a parameter pack.
func typeNames<each T>(_ types: repeat (each T).Type) -> [String] {
    var names: [String] = []
    for type in repeat each types { names.append(RpcValueCoding.typeName(type)) }
    return names
}

/// `value` as a method result.
func encodeResult<R: Encodable>(_ value: R, method: String) throws(RpcServiceError) -> JSONValue {
    do {
        return try RpcValueCoding.encode(value)
    } catch {
        throw .resultNotEncodable(method: method, reason: error.description)
    }
}
