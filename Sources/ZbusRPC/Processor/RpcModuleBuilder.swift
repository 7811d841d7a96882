import ZbusKernel

#if compiler(>=6.2)
/// What a method parameter can be: any `Decodable` type (whose metatype may cross threads, as every non-isolated type's
/// can).
public typealias RpcParameter = Decodable & SendableMetatype
/// What a method result can be: any `Encodable` type (whose metatype may cross threads).
public typealias RpcResult = Encodable & SendableMetatype
#else
/// What a method parameter can be: any `Decodable` type.
public typealias RpcParameter = Decodable
/// What a method result can be: any `Encodable` type.
public typealias RpcResult = Encodable
#endif

/// Collects the methods of one module; handed to the closure of ``RpcProcessor/module(_:aliases:_:)``.
///
/// Parameters and results are any `Codable` types; the parameter types come from the closure:
///
/// ```swift
/// processor.module("calc") { calc in
///     calc.method("plus") { (a: Int, b: Int) in a + b }
///     calc.method("plus") { (a: Int, b: Int, c: Int) in a + b + c }      // an overload: 3 parameters
///     calc.method("find") { (id: Int) async throws -> User in try await users.find(id) }
/// }
/// ```
///
/// **Where a method runs.** A synchronous closure runs right where the request arrived, on the connection's event loop,
/// like a SwiftNIO handler: that is the fastest path, and it is for short, non-blocking work (arithmetic, lookups in
/// memory). Anything that waits, blocks or takes long must be an `async` closure, which runs as a task on Swift's
/// concurrency pool.
///
/// Registering a name with a parameter count already registered replaces the earlier method.
public final class RpcModuleBuilder {
    /// The module's name.
    public let module: String
    var methods: [RpcMethod] = []

    init(module: String) {
        self.module = module
    }

    /// Adds a synchronous method that returns a value; it runs on the event loop and must not block.
    ///
    /// - Parameters:
    ///   - name: the method name callers use.
    ///   - body: the implementation; its parameter types decide how arguments are converted.
    public func method<each P: RpcParameter, R: RpcResult>(_ name: String, _ body: @escaping @Sendable (repeat each P) throws -> R) {
        let label = name
        add(name, parameters: typeNames(repeat (each P).self), returns: RpcValueCoding.typeName(R.self), .inline({ arguments in
            let reader = ArgumentReader(arguments, method: label)
            return try encodeResult(try body(repeat try reader.next((each P).self)), method: label)
        }))
    }

    /// Adds an `async` method that returns a value; it runs as a task.
    ///
    /// - Parameters:
    ///   - name: the method name callers use.
    ///   - body: the implementation; its parameter types decide how arguments are converted.
    public func method<each P: RpcParameter, R: RpcResult>(_ name: String, _ body: @escaping @Sendable (repeat each P) async throws -> R) {
        let label = name
        add(name, parameters: typeNames(repeat (each P).self), returns: RpcValueCoding.typeName(R.self), .async({ arguments in
            let reader = ArgumentReader(arguments, method: label)
            return try encodeResult(try await body(repeat try reader.next((each P).self)), method: label)
        }))
    }

    /// Adds a synchronous method that returns nothing (the result is `null`); it runs on the event loop and must not
    /// block.
    ///
    /// - Parameters:
    ///   - name: the method name callers use.
    ///   - body: the implementation.
    public func method<each P: RpcParameter>(_ name: String, _ body: @escaping @Sendable (repeat each P) throws -> Void) {
        let label = name
        add(name, parameters: typeNames(repeat (each P).self), returns: "Void", .inline({ arguments in
            let reader = ArgumentReader(arguments, method: label)
            try body(repeat try reader.next((each P).self))
            return .null
        }))
    }

    /// Adds an `async` method that returns nothing (the result is `null`); it runs as a task.
    ///
    /// - Parameters:
    ///   - name: the method name callers use.
    ///   - body: the implementation.
    public func method<each P: RpcParameter>(_ name: String, _ body: @escaping @Sendable (repeat each P) async throws -> Void) {
        let label = name
        add(name, parameters: typeNames(repeat (each P).self), returns: "Void", .async({ arguments in
            let reader = ArgumentReader(arguments, method: label)
            try await body(repeat try reader.next((each P).self))
            return .null
        }))
    }

    /// Adds a method that takes the raw JSON arguments, whatever their number (it answers every parameter count that
    /// has no typed overload).
    ///
    /// - Parameters:
    ///   - name: the method name callers use.
    ///   - body: the implementation.
    public func rawMethod(_ name: String, _ body: @escaping @Sendable ([JSONValue]) async throws -> JSONValue) {
        add(name, parameters: ["JSONValue..."], returns: "JSONValue", .async(body), variadic: true)
    }

    private func add(_ name: String, parameters: [String], returns: String, _ body: RpcMethod.Body, variadic: Bool = false) {
        let method = RpcMethod(module: module, name: name, parameterTypes: parameters, returnType: returns, variadic: variadic, body: body)
        methods.removeAll { $0.name == name && $0.arity == method.arity && $0.variadic == variadic }
        methods.append(method)
    }
}
