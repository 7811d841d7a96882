import Foundation
import ZbusKernel

/// Builds the JSON body of an RPC request from a URL (`GET /<mq>/<module>/<method>?params=...`).
///
/// zbus 6.3.0 concatenated strings without escaping, so a quote in a parameter broke the JSON. Here every name is
/// escaped, and `params` is read as a comma-separated list of JSON values (`1,2`, `"a",true`); an item that is not
/// valid JSON is taken as a plain string (`hello` becomes `"hello"`).
enum UrlRpc {
    /// The request body for `module`, `method` and the raw `params` text.
    static func body(module: String, method: String, params: String?) -> String {
        var object: [String: JSONValue] = ["module": .string(module), "method": .string(method)]
        if let params, !params.isEmpty { object["params"] = .array(parseParams(params)) }
        return JSONValue.object(object).jsonText
    }

    /// Reads `1,2` or `"a","b"` as JSON values; falls back to one string per comma-separated item.
    static func parseParams(_ text: String) -> [JSONValue] {
        if let data = "[\(text)]".data(using: .utf8), let values = try? JSONDecoder().decode([JSONValue].self, from: data) {
            return values
        }
        return text.split(separator: ",", omittingEmptySubsequences: false).map { item in
            let trimmed = item.trimmingCharacters(in: .whitespaces)
            if let data = trimmed.data(using: .utf8), let value = try? JSONDecoder().decode(JSONValue.self, from: data) {
                return value
            }
            return .string(trimmed)
        }
    }
}
