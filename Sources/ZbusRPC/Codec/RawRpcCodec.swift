import NIOCore
import ZbusKernel

/// The raw codec (`codec: raw`, `content-type: application/octet-stream`): the body passes through untouched.
///
/// - **Request.** The method and module travel in the `method` and `module` headers; the body (UTF-8 text) is the one
///   argument, and a request without a body has none. So `echo` answers `curl -H 'method: echo' -d 'hello'` with
///   `hello`.
/// - **Response.** A `String` result is the body as is (`text/plain`); another result is its JSON text
///   (`application/json`); no result is no body. A failure is status 500 with the error message as the body.
///
/// Use it for services that take and return one text blob (documents, pre-encoded payloads), and for plain HTTP
/// clients that should not have to build JSON.
public struct RawRpcCodec: RpcCodec {
    /// The header naming the method.
    public static let methodHeader = "method"
    /// The header naming the module.
    public static let moduleHeader = "module"

    /// `raw`.
    public var name: String { "raw" }
    /// `application/octet-stream`.
    public var contentTypes: [String] { ["application/octet-stream"] }

    /// Creates the codec.
    public init() {}

    /// Reads the method from the `method` header and the body as the one argument.
    public func decodeRequest(_ message: Message) throws -> RpcRequest {
        var request = RpcRequest(module: message.headers[Self.moduleHeader] ?? "", method: message.headers[Self.methodHeader] ?? "")
        if let body = message.body, body.readableBytes > 0 {
            request.params = [.string(try BodyCharset.text(body, charset: message.encoding, codec: name))]
        }
        return request
    }

    /// Writes the result as the body (text as is, anything else as JSON); a failure as status 500 with its message.
    public func encodeResponse(_ response: RpcResponse) -> Message {
        var headers = Headers()
        if response.isFailure {
            headers.set(lowercased: HeaderName.contentType, "text/plain; charset=utf-8")
            return Message(status: 500, headers: headers, body: ByteBuffer(string: response.errorMessage ?? "failed"))
        }
        switch response.result {
        case .null:
            return Message(status: 200, headers: headers, body: nil)
        case .string(let text):
            headers.set(lowercased: HeaderName.contentType, "text/plain; charset=utf-8")
            return Message(status: 200, headers: headers, body: ByteBuffer(string: text))
        default:
            headers.set(lowercased: HeaderName.contentType, "application/json")
            var body = ByteBuffer()
            JSONWriter.write(response.result, into: &body)
            return Message(status: 200, headers: headers, body: body)
        }
    }

    /// Writes the method into headers and the one argument as the body.
    ///
    /// - Throws: ``RpcCodecError/unsupported(codec:reason:)`` for more than one argument.
    public func encodeRequest(_ request: RpcRequest) throws -> Message {
        var headers = Headers()
        headers.set(lowercased: HeaderName.contentType, "application/octet-stream")
        headers.set(lowercased: Self.methodHeader, request.method)
        if !request.module.isEmpty { headers.set(lowercased: Self.moduleHeader, request.module) }
        let body: ByteBuffer?
        switch request.params.count {
        case 0: body = nil
        case 1:
            if case .string(let text) = request.params[0] { body = ByteBuffer(string: text) } else { body = ByteBuffer(string: JSONWriter.text(of: request.params[0])) }
        default:
            throw RpcCodecError.unsupported(codec: name, reason: "it carries one argument as the body, but \(request.method) was called with \(request.params.count); use the json codec")
        }
        return Message(method: "POST", uri: "/", headers: headers, body: body)
    }

    /// Reads the body as the result (a string), or a non-200 body as the failure's message.
    public func decodeResponse(_ message: Message) throws -> RpcResponse {
        let text = message.bodyString
        guard message.status ?? 200 == 200 else {
            return .failure(text.isEmpty ? "status \(message.status ?? 0) without a body" : text)
        }
        return RpcResponse(result: message.body == nil ? .null : .string(text))
    }
}
