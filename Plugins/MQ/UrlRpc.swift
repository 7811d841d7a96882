import ZbusKernel

/// Builds the JSON body of an RPC request from a URL (`GET /<mq>/<module>/<method>?params=...`).
///
/// zbus 6.3.0 concatenated strings without escaping, so a quote in a parameter broke the JSON. Here the arguments are
/// read by ``UrlRequest/arguments(fromParams:)`` (the reading the direct RPC server uses too) and the body is written
/// by the JSON writer, which escapes every string.
enum UrlRpc {
    /// The request body for `module`, `method` and the raw `params` text; without arguments it has no `params` key,
    /// as zbus 6 sent it.
    static func body(module: String, method: String, params: String?) -> String {
        var object: [String: JSONValue] = ["module": .string(module), "method": .string(method)]
        let arguments = UrlRequest.arguments(fromParams: params)
        if !arguments.isEmpty { object["params"] = .array(arguments) }
        return JSONValue.object(object).jsonText
    }
}
