import NIOCore
import ZbusKernel

/// The zbus 6 JSON codec (`codec: json`, `content-type: application/json`).
///
/// On the wire, exactly as zbus 6 peers write it (field names and `null`s included, which Java's fastjson writes with
/// `WriteMapNullValue`):
///
/// ```
/// {"module":"calc","method":"plus","params":[1,2],"paramTypes":null,"encoding":"UTF-8"}
/// {"result":3,"error":null,"stackTrace":null,"encoding":"UTF-8"}                               200
/// {"result":null,"error":{"message":"..."},"stackTrace":"...","encoding":"UTF-8"}                500
/// ```
///
/// Reading accepts what real peers send: `@type` keys anywhere (ignored), fastjson's `3L` numbers, a Python service's
/// `stack_trace`, a missing `module` (`""`) or `params` (`[]`), and a body in the charset named by the `encoding`
/// header (UTF-8 by default).
public struct JsonRpcCodec: RpcCodec {
    /// `json`.
    public var name: String { "json" }
    /// `application/json` and `text/json`.
    public var contentTypes: [String] { ["application/json", "text/json"] }

    /// Creates the codec.
    public init() {}

    /// Reads `{module, method, params, paramTypes, encoding}` from the body.
    ///
    /// - Throws: ``RpcCodecError`` when the body is not a JSON object or a field has the wrong type.
    public func decodeRequest(_ message: Message) throws -> RpcRequest {
        let object = try bodyObject(message)
        var request = RpcRequest(method: "")
        request.module = try Self.string(object, "module") ?? ""
        request.method = try Self.string(object, "method") ?? ""
        switch object["params"] {
        case .array(let items)?: request.params = items
        case .null?, nil: request.params = []
        case let single?: request.params = [single]  // a lone argument sent without its list
        }
        switch object["paramTypes"] {
        case .array(let items)?: request.paramTypes = items.map { $0.stringValue ?? JSONWriter.text(of: $0) }
        case .null?, nil: request.paramTypes = nil
        case let other?: throw RpcCodecError.wrongFieldType(codec: name, field: "paramTypes", expected: "an array of type names", found: RpcValueCoding.shortened(other))
        }
        if let encoding = try Self.string(object, "encoding") { request.encoding = encoding }
        return request
    }

    /// Writes the response JSON; status 200, or 500 when it reports a failure.
    public func encodeResponse(_ response: RpcResponse) -> Message {
        var body = ByteBufferAllocator().buffer(capacity: 96)
        body.writeStaticString("{\"result\":")
        JSONWriter.write(response.result, into: &body)
        body.writeStaticString(",\"error\":")
        JSONWriter.write(response.error ?? .null, into: &body)
        body.writeStaticString(",\"stackTrace\":")
        if let stackTrace = response.stackTrace { JSONWriter.writeString(stackTrace, into: &body) } else { body.writeStaticString("null") }
        body.writeStaticString(",\"encoding\":")
        Self.writeEncoding(response.encoding, into: &body)
        var headers = Headers()
        headers.set(lowercased: HeaderName.contentType, "application/json")
        return Message(status: response.isFailure ? 500 : 200, headers: headers, body: body)
    }

    /// Writes the request JSON as a `POST /` message with `content-type: application/json`.
    public func encodeRequest(_ request: RpcRequest) throws -> Message {
        var headers = Headers()
        headers.reserveCapacity(6)  // room for what an invoker adds: id, cmd, mq, ack, token
        headers.set(lowercased: HeaderName.contentType, "application/json")
        headers.set(lowercased: HeaderName.id, RequestId.next())
        return Message(method: "POST", uri: "/", headers: headers, body: Self.body(of: request))
    }

    /// Reads `{result, error, stackTrace, encoding}` (or a Python service's `stack_trace`).
    ///
    /// A non-200 status whose body is not such an object (a plain error text) becomes a failure carrying that text.
    ///
    /// - Throws: ``RpcCodecError`` when a 200 body is not a JSON object.
    public func decodeResponse(_ message: Message) throws -> RpcResponse {
        let status = message.status ?? 200
        let object: Envelope
        do {
            object = try bodyObject(message)
        } catch {
            guard status != 200 else { throw error }
            let text = message.bodyString
            return .failure(text.isEmpty ? "status \(status) without a body" : text, stackTrace: "status \(status): \(text)")
        }
        var response = RpcResponse()
        response.result = object["result"] ?? .null
        if let error = object["error"], error != .null { response.error = error }
        switch object["stackTrace"] ?? object["stack_trace"] {
        case .string(let text)?: response.stackTrace = text
        case .null?, nil: response.stackTrace = nil
        case let other?: response.stackTrace = JSONWriter.text(of: other)  // a Java StackTraceElement[] as JSON
        }
        if let encoding = object["encoding"]?.stringValue { response.encoding = encoding }
        if response.error != nil && response.stackTrace == nil {
            response.stackTrace = response.errorMessage
        }
        if status != 200 && !response.isFailure {
            let text = message.bodyString
            return .failure("status \(status): \(text)")
        }
        return response
    }

    /// The request JSON, fields in zbus 6 order.
    public static func body(of request: RpcRequest) -> ByteBuffer {
        var body = ByteBufferAllocator().buffer(capacity: 96)
        body.writeStaticString("{\"module\":")
        JSONWriter.writeString(request.module, into: &body)
        body.writeStaticString(",\"method\":")
        JSONWriter.writeString(request.method, into: &body)
        body.writeStaticString(",\"params\":")
        JSONWriter.write(.array(request.params), into: &body)
        body.writeStaticString(",\"paramTypes\":")
        if let types = request.paramTypes { JSONWriter.write(.array(types.map { .string($0) }), into: &body) } else { body.writeStaticString("null") }
        body.writeStaticString(",\"encoding\":")
        writeEncoding(request.encoding, into: &body)
        return body
    }

    /// Writes the `encoding` value and closes the object (`"UTF-8"`, nearly always, without escaping work).
    private static func writeEncoding(_ encoding: String, into body: inout ByteBuffer) {
        if encoding == "UTF-8" {
            body.writeStaticString("\"UTF-8\"}")
        } else {
            JSONWriter.writeString(encoding, into: &body)
            body.writeInteger(UInt8(ascii: "}"))
        }
    }

    /// The members of the body's JSON object (read without building a dictionary: an envelope has a handful).
    struct Envelope {
        let members: [(key: String, value: JSONValue)]

        /// The value of `key` (the last one, when repeated).
        subscript(key: String) -> JSONValue? {
            for member in members.reversed() where member.key == key { return member.value }
            return nil
        }
    }

    private func bodyObject(_ message: Message) throws(RpcCodecError) -> Envelope {
        guard let body = message.body, body.readableBytes > 0 else {
            throw .notAnObject(codec: name, found: "an empty body")
        }
        let utf8 = try BodyCharset.utf8Body(body, charset: message.headers.value(lowercased: HeaderName.encoding), codec: name)
        let members: [(key: String, value: JSONValue)]?
        do {
            members = try JSONParser.parseMembers(utf8)
        } catch {
            throw .notJSON(codec: name, error)
        }
        guard let members else {
            throw .notAnObject(codec: name, found: RpcValueCoding.shortened((try? JSONParser.parse(utf8)) ?? .null))
        }
        return Envelope(members: members)
    }

    private static func string(_ object: Envelope, _ field: String) throws(RpcCodecError) -> String? {
        switch object[field] {
        case .string(let text)?: return text
        case .null?, nil: return nil
        case let other?: throw .wrongFieldType(codec: "json", field: field, expected: "a string", found: RpcValueCoding.shortened(other))
        }
    }
}
