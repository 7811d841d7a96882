import NIOCore
import NIOHTTP1
import ZbusKernel
import ZbusProxy

/// The `http` adapter kind: forwards each message to a legacy HTTP/1.1 service and routes its response back.
///
/// Mapping: method = the `http-method` header, else the message's request method (`GET` for a body-less message,
/// `POST` with a body when the caller's start line says nothing better); path = the `path` header, else the message's
/// URI; headers = the message's own headers minus zbus control headers; body = body. The response's status becomes the
/// reply's status (`reply_code` for the caller), its headers and body are the reply's.
///
/// ```yaml
/// - { name: quotes, kind: http, mq: Quotes, target: "http://127.0.0.1:8080/api" }
/// ```
public struct HttpAdapterFactory: ProxyAdapterFactory {
    /// Creates the factory.
    public init() {}

    /// `target` (`http://HOST:PORT[/base-path]`).
    public var configKeys: [String] { ["target"] }

    /// Builds an `http` adapter; it connects only when the first call comes.
    ///
    /// - Throws: ``ConfigError`` for a missing target or one that is not `http://HOST:PORT[/path]`.
    public func makeAdapter(config: ConfigSection) throws(ConfigError) -> any ProxyAdapter {
        let settings = try ProxyAdapterSettings(config)
        guard let text = try config.string("target") else {
            throw config.value.error("missing key 'target': the legacy service's URL, such as http://127.0.0.1:8080")
        }
        let location = config["target"] ?? config.value
        guard text.hasPrefix("http://") else {
            throw location.error("expected an http:// URL such as http://127.0.0.1:8080 (https is not supported), found '\(text)'")
        }
        let rest = text.dropFirst("http://".count)
        let authority = rest.prefix { $0 != "/" }
        var basePath = String(rest.dropFirst(authority.count))
        while basePath.hasSuffix("/") { basePath.removeLast() }
        let hostPort = authority.contains(":") ? String(authority) : "\(authority):80"
        let target: HostAndPort
        do throws(HostAndPort.ParseError) {
            target = try HostAndPort(parsing: hostPort)
        } catch {
            throw location.error("bad URL '\(text)': \(error.description)")
        }
        return HttpAdapter(name: settings.name, target: target, basePath: basePath, connectTimeout: settings.timeout,
                           maxIdle: settings.maxInFlight)
    }
}

/// One HTTP exchange's request.
struct HTTPRequestMessage: Sendable {
    var head: HTTPRequestHead
    var body: ByteBuffer?
}

/// One complete HTTP response.
struct HTTPResponseMessage: Sendable {
    var head: HTTPResponseHead
    var body: ByteBuffer
}

/// Calls a legacy HTTP/1.1 service over pooled keep-alive connections.
final class HttpAdapter: TimedProxyAdapter {
    var address: String { "http://\(target)\(basePath)" }
    /// zbus control headers and hop-by-hop headers, which are never forwarded either way.
    static let reserved: Set<String> = [
        "cmd", "mq", "id", "rawid", "sender", "recver", "server", "remote-addr", "ack", "token", "topic", "key", "key_group",
        "timeout", "reply_code", "http-method", "path", "encoding", "original_id", "original_url", "original_mq",
        "content-length", "connection", "keep-alive", "transfer-encoding", "host", "expect", "upgrade", "te", "trailer",
    ]

    private let target: HostAndPort
    private let basePath: String
    private let pool: LegacyClientPool<HTTPRequestMessage, HTTPResponseMessage>

    init(name: String, target: HostAndPort, basePath: String, connectTimeout: Duration, maxIdle: Int) {
        self.target = target
        self.basePath = basePath
        pool = LegacyClientPool(
            service: name, address: target, connectTimeout: connectTimeout, maxIdle: maxIdle,
            configure: { channel in
                try channel.pipeline.syncOperations.addHTTPClientHandlers()
                try channel.pipeline.syncOperations.addHandler(HTTPClientExchangeCodec())
            },
            reusable: { response in response.head.isKeepAlive })
    }

    func call(_ request: Message) async throws -> Message {
        try await call(request, timeout: .seconds(60))
    }

    func call(_ request: Message, timeout: Duration) async throws -> Message {
        let response = try await pool.exchange(makeRequest(request), timeout: timeout)
        var reply = Message(status: Int(response.head.status.code))
        for (name, value) in response.head.headers {
            let lower = name.lowercased()
            if !Self.reserved.contains(lower) { reply.headers[lower] = value }
        }
        reply.body = response.body.readableBytes > 0 ? response.body : nil
        return reply
    }

    func shutdown() async {
        await pool.shutdown()
    }

    private func makeRequest(_ message: Message) -> HTTPRequestMessage {
        let hasBody = (message.body?.readableBytes ?? 0) > 0
        var method = "GET"
        var uri = "/"
        if case .request(let requestMethod, let requestURI) = message.startLine {
            method = requestMethod
            uri = requestURI
        }
        if let header = message.headers[HeaderName.httpMethod] { method = header.uppercased() }
        if let path = message.headers[HeaderName.httpPath] { uri = path.hasPrefix("/") ? path : "/" + path }
        if method == "GET" && hasBody && message.headers[HeaderName.httpMethod] == nil { method = "POST" }
        var headers = HTTPHeaders()
        headers.add(name: "host", value: target.description)
        for (name, value) in message.headers where !Self.reserved.contains(name) {
            headers.add(name: name, value: value)
        }
        headers.add(name: "content-length", value: String(message.body?.readableBytes ?? 0))
        let head = HTTPRequestHead(version: .http1_1, method: HTTPMethod(rawValue: method), uri: basePath + uri, headers: headers)
        return HTTPRequestMessage(head: head, body: hasBody ? message.body : nil)
    }
}

extension HeaderName {
    /// `http-method`: the method an `http` adapter uses.
    static let httpMethod = "http-method"
    /// `path`: the path an `http` adapter requests.
    static let httpPath = "path"
}

/// Turns one request into HTTP parts and collects the response parts into one ``HTTPResponseMessage``.
final class HTTPClientExchangeCodec: ChannelDuplexHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias InboundOut = HTTPResponseMessage
    typealias OutboundIn = HTTPRequestMessage
    typealias OutboundOut = HTTPClientRequestPart

    private var head: HTTPResponseHead?
    private var body = ByteBuffer()

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        context.write(wrapOutboundOut(.head(request.head)), promise: nil)
        if let body = request.body { context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil) }
        context.write(wrapOutboundOut(.end(nil)), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let responseHead):
            if responseHead.status == .continue { return }  // 100 Continue is not the answer
            head = responseHead
            body.clear()
        case .body(var part):
            body.writeBuffer(&part)
        case .end:
            guard let responseHead = head else { return }
            head = nil
            context.fireChannelRead(wrapInboundOut(HTTPResponseMessage(head: responseHead, body: body)))
            body = ByteBuffer()
        }
    }
}
