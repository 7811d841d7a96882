import NIOCore
import ZbusKernel

/// The methods a service offers, found by `module:method` and parameter count, and the logic that runs a request.
///
/// ```swift
/// var processor = RpcProcessor()
/// processor.module("calc", aliases: ["Calc"]) { calc in
///     calc.method("plus") { (a: Int, b: Int) in a + b }
///     calc.method("echo") { (text: String) in text }
/// }
/// let response = await processor.process(RpcRequest(module: "calc", method: "plus", params: [1, 2]))   // result 3
/// ```
///
/// - **Lookup.** A request names a module and a method; the method is chosen among its overloads by the number of
///   arguments. A request with an empty `module` (what Python and Node callers send) finds the method in any module,
///   the first registered that has it. An alias names the same module (zbus 6 Java services were found under their
///   interface's simple and full names).
/// - **Catalogue.** A request with an empty `method` gets the method catalogue as its result:
///   `{"calc":[{"modules":["calc"],"name":"plus","paramTypes":["Int","Int"],"returnType":"Int"},...]}` (only the named
///   module's methods when it names one).
/// - **Errors.** A missing method, a wrong argument count or type, and any error the method throws come back as a
///   failure (status 500 with `error` and `stackTrace`), with zbus 6's messages: `calc:nosuch not found, module may not
///   set, or wrong`, `Method:plus(Int, Int), called with plus(1)`.
///
/// A value type: build it, then hand copies to as many services as you like.
public struct RpcProcessor: Sendable {
    /// module (or alias, or "" for any) → method → parameter count → method.
    private var table: [String: [String: Overloads]] = [:]
    /// Registered modules in order, with their aliases.
    private var registered: [(name: String, aliases: [String])] = []

    /// The overloads of one name: a short list searched linearly (cheaper than hashing for a few entries).
    private struct Overloads: Sendable {
        var fixed: [RpcMethod] = []
        var variadic: RpcMethod?

        func method(for count: Int) -> RpcMethod? {
            for method in fixed where method.arity == count { return method }
            return variadic
        }

        func method(arity: Int) -> RpcMethod? {
            for method in fixed where method.arity == arity { return method }
            return nil
        }

        mutating func set(_ method: RpcMethod) {
            fixed.removeAll { $0.arity == method.arity }
            fixed.append(method)
            fixed.sort { $0.arity < $1.arity }
        }

        var all: [RpcMethod] { fixed + (variadic.map { [$0] } ?? []) }
    }

    /// An empty processor.
    public init() {}

    /// Adds (or extends) a module.
    ///
    /// - Parameters:
    ///   - name: the module name callers send in `module`.
    ///   - aliases: other names that reach the same methods.
    ///   - build: registers the methods (see ``RpcModuleBuilder``).
    public mutating func module(_ name: String, aliases: [String] = [], _ build: (RpcModuleBuilder) throws -> Void) rethrows {
        let builder = RpcModuleBuilder(module: name)
        try build(builder)
        if let index = registered.firstIndex(where: { $0.name == name }) {
            registered[index].aliases = Array(Set(registered[index].aliases + aliases)).sorted()
        } else {
            registered.append((name, aliases))
        }
        for method in builder.methods {
            for key in [name] + aliases { insert(method, under: key, replacing: true) }
            insert(method, under: "", replacing: false)  // first registered wins for module-less callers
        }
    }

    /// Adds every module of `other` (its methods replace same-named ones here).
    public mutating func merge(_ other: RpcProcessor) {
        for (name, aliases) in other.registered {
            let methods = other.table[name]?.values.flatMap(\.all) ?? []
            module(name, aliases: aliases) { builder in
                for method in methods { builder.adopt(method) }
            }
        }
    }

    private mutating func insert(_ method: RpcMethod, under module: String, replacing: Bool) {
        var overloads = table[module]?[method.name] ?? Overloads()
        if method.isVariadic {
            if replacing || overloads.variadic == nil { overloads.variadic = method }
        } else if replacing || overloads.method(arity: method.arity) == nil {
            overloads.set(method)
        }
        table[module, default: [:]][method.name] = overloads
    }

    /// The registered module names, in order of registration.
    public var moduleNames: [String] { registered.map(\.name) }

    /// The method `module:name` that takes `argumentCount` arguments.
    public func method(module: String, name: String, argumentCount: Int) -> RpcMethod? {
        table[module]?[name]?.method(for: argumentCount)
    }

    /// The catalogue of every module, or of `module` (or an alias of it).
    ///
    /// - Returns: `{module: [{modules, name, paramTypes, returnType}]}`, or `nil` for an unknown module.
    public func catalogue(module: String = "") -> JSONValue? {
        var result: [String: JSONValue] = [:]
        for (name, aliases) in registered where module.isEmpty || module == name || aliases.contains(module) {
            let methods = (table[name] ?? [:]).keys.sorted().flatMap { table[name]![$0]!.all }
            result[name] = .array(methods.map { method in
                .object([
                    "modules": .array(([name] + aliases).map { .string($0) }),
                    "name": .string(method.name),
                    "paramTypes": .array(method.parameterTypes.map { .string($0) }),
                    "returnType": .string(method.returnType),
                ])
            })
        }
        if !module.isEmpty && result.isEmpty { return nil }
        return .object(result)
    }

    /// Runs `request` and returns its response; never throws (failures are responses).
    public nonisolated(nonsending) func process(_ request: RpcRequest) async -> RpcResponse {
        switch resolve(request) {
        case .ready(let response): return response
        case .call(let method, let arguments): return await method.call(arguments)
        }
    }

    /// What a request resolves to: an answer already known (a failure, the catalogue, or the result of a synchronous
    /// method run right here), or an `async` method still to call.
    enum Resolution {
        case ready(RpcResponse)
        case call(RpcMethod, [JSONValue])
    }

    /// Resolves `request`, running a synchronous method at once.
    func resolve(_ request: RpcRequest) -> Resolution {
        var response: RpcResponse
        if request.method.isEmpty {
            if let catalogue = catalogue(module: request.module) {
                response = RpcResponse(result: catalogue)
            } else {
                response = .failure(RpcServiceError.moduleNotFound(module: request.module, known: moduleNames))
            }
        } else if let overloads = table[request.module]?[request.method] {
            if let method = overloads.method(for: request.params.count) {
                if let inline = method.callInline(request.params) {
                    response = inline
                } else {
                    return .call(method, request.params)
                }
            } else {
                let signatures = overloads.all.map(\.parameterTypes)
                response = .failure(RpcServiceError.argumentCount(
                    method: request.method, signatures: signatures, arguments: request.params.map(RpcValueCoding.shortened)))
            }
        } else {
            response = .failure(RpcServiceError.methodNotFound(module: request.module, method: request.method))
        }
        response.encoding = request.encoding
        return .ready(response)
    }
}

extension RpcModuleBuilder {
    /// Adds a method built elsewhere (``RpcProcessor/merge(_:)``).
    func adopt(_ method: RpcMethod) {
        methods.removeAll { $0.name == method.name && $0.arity == method.arity }
        methods.append(method)
    }
}
