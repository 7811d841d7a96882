import NIOCore
import ZbusKernel

/// RPC calls written as URLs (`GET /Calc/plus?params=1,2`), turned into properly escaped JSON requests.
///
/// zbus 6.3.0 built the JSON by pasting the URL's text between quotes, so a quote or backslash in a parameter broke
/// the request (spec §1.6, §10 item 10). Here every value is parsed, then written by a JSON writer.
public enum RpcUrl {
    /// The JSON request body for a URL call: `{"module":..,"method":..,"params":[..],"paramTypes":null,"encoding":"UTF-8"}`.
    ///
    /// - Parameters:
    ///   - module: the module (`nil` or empty: any).
    ///   - method: the method.
    ///   - params: the `params` text of the URL, already percent-decoded (read by ``UrlRequest/arguments(fromParams:)``).
    public static func requestBody(module: String?, method: String, params: String?) -> String {
        let request = RpcRequest(module: module ?? "", method: method, params: UrlRequest.arguments(fromParams: params))
        return String(buffer: JsonRpcCodec.body(of: request))
    }

    /// The request a body-less message asks for by its URL, for the direct RPC server: `/method`, `/module/method`
    /// (with more segments, the last two), `?module=`, `?method=`, and the arguments in `?params=` or a bare query
    /// token (`/plus?1,2`). `GET /` asks for the catalogue.
    public static func request(fromURLOf message: Message) -> RpcRequest {
        let url = message.urlRequest
        var request = RpcRequest(method: "")
        let segments = url.pathSegments
        switch segments.count {
        case 0: break
        case 1: request.method = segments[0]
        default:
            request.module = segments[segments.count - 2]
            request.method = segments[segments.count - 1]
        }
        if let module = url.query["module"] { request.module = module }
        if let method = url.query["method"] { request.method = method }
        request.params = url.arguments
        return request
    }
}
