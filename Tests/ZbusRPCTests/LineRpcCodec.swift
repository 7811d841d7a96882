import NIOCore
import Zbus

/// A custom codec, as a user would write one: one conformance, contributed by a module in one registration.
///
/// Request body: `module.method|arg|arg` (each argument JSON, or else text); response body: `OK <json>`, or status 500
/// and `ERR <message>`.
struct LineRpcCodec: RpcCodec {
    var name: String { "line" }
    var contentTypes: [String] { ["text/x-zbus-line"] }

    struct Malformed: Error, CustomStringConvertible {
        let description: String
    }

    func decodeRequest(_ message: Message) throws -> RpcRequest {
        let fields = message.bodyString.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
        guard let head = fields.first, !head.isEmpty else { throw Malformed(description: "line codec: expected module.method|arg|..., got '\(message.bodyString)'") }
        let names = head.split(separator: ".", maxSplits: 1).map(String.init)
        let params = fields.dropFirst().map { field -> JSONValue in (try? JSONParser.parse(field)) ?? .string(field) }
        return names.count == 2
            ? RpcRequest(module: names[0], method: names[1], params: Array(params))
            : RpcRequest(method: names[0], params: Array(params))
    }

    func encodeResponse(_ response: RpcResponse) -> Message {
        if response.isFailure {
            return Message(status: 500, body: ByteBuffer(string: "ERR " + (response.errorMessage ?? "")))
        }
        return Message(status: 200, body: ByteBuffer(string: "OK " + JSONWriter.text(of: response.result)))
    }

    func encodeRequest(_ request: RpcRequest) throws -> Message {
        let head = request.module.isEmpty ? request.method : "\(request.module).\(request.method)"
        let body = ([head] + request.params.map { JSONWriter.text(of: $0) }).joined(separator: "|")
        var message = Message(method: "POST", body: ByteBuffer(string: body))
        message.contentType = contentTypes[0]
        return message
    }

    func decodeResponse(_ message: Message) throws -> RpcResponse {
        let text = message.bodyString
        if text.hasPrefix("OK ") { return RpcResponse(result: try JSONParser.parse(String(text.dropFirst(3)))) }
        if text.hasPrefix("ERR ") { return .failure(String(text.dropFirst(4))) }
        throw Malformed(description: "line codec: expected 'OK <json>' or 'ERR <message>', got '\(text)'")
    }
}

/// The module that contributes ``LineRpcCodec``: `- module: line-codec` in YAML.
final class LineCodecModule: PluginModule {
    static let name = "line-codec"
    static let summary = "The `line` RPC codec (a test of custom codecs)."

    init(setup: ModuleSetup) throws(ConfigError) {}

    func contribute(to contributions: inout ModuleContributions) {
        contributions.add(LineRpcCodec(), to: .rpcCodecs)
    }
}
