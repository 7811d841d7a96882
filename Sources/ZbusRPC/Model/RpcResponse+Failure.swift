import ZbusKernel

extension RpcResponse {
    /// Whether this response reports a failure.
    ///
    /// zbus 6 Java clients test `stackTrace != null`; Python services set `error` (and `stack_trace`). Either marks a
    /// failure here.
    public var isFailure: Bool {
        if stackTrace != nil { return true }
        if let error, error != .null { return true }
        return false
    }

    /// The failure's message: the `message` of the `error` object (Java's serialized Throwable), the `error` string
    /// (Python), or the first line of the stack trace; `nil` for a success.
    public var errorMessage: String? {
        guard isFailure else { return nil }
        switch error {
        case .string(let text)?: return text
        case .object(let members)?:
            if case .string(let text)? = members["message"] { return text }
            if case .string(let text)? = members["localizedMessage"] { return text }
            if case .string(let text)? = members["detailMessage"] { return text }
        default: break
        }
        guard let stackTrace else { return error.map { JSONWriter.text(of: $0) } }
        return stackTrace.split(separator: "\n", maxSplits: 1).first.map(String.init) ?? stackTrace
    }

    /// A failure with `message`, shaped as zbus 6 clients expect: `error` is an object with the message (what fastjson
    /// reads back as a Throwable) and `stackTrace` is set, which is how every zbus client recognises a failure.
    ///
    /// - Parameters:
    ///   - message: what went wrong.
    ///   - stackTrace: the trace text; by default the message.
    public static func failure(_ message: String, stackTrace: String? = nil) -> RpcResponse {
        RpcResponse(result: .null, error: .object(["message": .string(message)]), stackTrace: stackTrace ?? message)
    }

    /// A failure for a Swift error: the error's description as the message, and `Module.Type: description` (the
    /// first line of a Java stack trace) as the trace.
    public static func failure(_ error: any Error) -> RpcResponse {
        let message = String(describing: error)
        return failure(message, stackTrace: "\(String(reflecting: type(of: error))): \(message)")
    }
}
