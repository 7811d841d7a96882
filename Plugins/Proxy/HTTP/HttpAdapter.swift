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

    /// `target` (`http://HOST:PORT[/base-path]`), `max_reply` (the largest response body taken, default 32 MiB).
    public var configKeys: [String] { ["target", "max_reply"] }

    /// The default `max_reply`: a node's default `max_body_bytes`, the largest body it takes from a client.
    static let defaultMaxReply = 32 << 20

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
        let maxReply = try config.byteSize("max_reply", in: 1...(1 << 31)) ?? Self.defaultMaxReply
        return HttpAdapter(name: settings.name, target: target, basePath: basePath, connectTimeout: settings.timeout,
                           maxIdle: settings.maxInFlight, maxReply: maxReply)
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
final class HttpAdapter: TimedProxyAdapter, LoopProxyAdapter {
    var address: String { "http://\(target)\(basePath)" }
    /// zbus control headers and hop-by-hop headers, which are never forwarded either way.
    static let reserved: Set<String> = [
        "cmd", "mq", "id", "rawid", "sender", "recver", "server", "remote-addr", "ack", "token", "topic", "key", "key_group",
        "timeout", "reply_code", "http-method", "path", "encoding", "original_id", "original_url", "original_mq",
        "content-length", "connection", "keep-alive", "transfer-encoding", "host", "expect", "upgrade", "te", "trailer",
    ]

    private let name: String
    private let target: HostAndPort
    private let basePath: String
    private let connectTimeout: Duration
    private let pool: LegacyClientPool<HTTPRequestMessage, HTTPResponseMessage>

    private let maxReply: Int

    init(name: String, target: HostAndPort, basePath: String, connectTimeout: Duration, maxIdle: Int,
         maxReply: Int = HttpAdapterFactory.defaultMaxReply) {
        self.name = name
        self.target = target
        self.basePath = basePath
        self.connectTimeout = connectTimeout
        self.maxReply = maxReply
        pool = LegacyClientPool(
            service: name, address: target, connectTimeout: connectTimeout, maxIdle: maxIdle,
            configure: { channel in
                try channel.pipeline.syncOperations.addHTTPClientHandlers()
                try channel.pipeline.syncOperations.addHandler(HTTPClientExchangeCodec(maxReply: maxReply))
            },
            reusable: { response in response.head.isKeepAlive })
    }

    func call(_ request: Message) async throws -> Message {
        try await call(request, timeout: .seconds(60))
    }

    func call(_ request: Message, timeout: Duration) async throws -> Message {
        Self.reply(try await pool.exchange(makeRequest(request), timeout: timeout))
    }

    func makeLoopCaller(on eventLoop: any EventLoop, timeout: Duration) -> any LoopLegacyCaller {
        let encoding = HTTPRequestEncoding(host: target.description, basePath: basePath)
        let maxReply = self.maxReply
        return LoopLegacyClient(
            on: eventLoop, service: name, address: target, connectTimeout: connectTimeout, timeout: timeout,
            configure: { channel in
                // Toward the socket: the request's bytes; the decoder sees the request head (it needs the method to
                // read the response to a HEAD), and the codec turns messages into bytes and responses into messages.
                try channel.pipeline.syncOperations.addHandler(HTTPRequestBytesWriter())
                try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(HTTPResponseDecoder(leftOverBytesStrategy: .dropBytes)))
                try channel.pipeline.syncOperations.addHandler(HTTPMessageExchangeCodec(encoding: encoding, maxReply: maxReply))
            })
    }

    func shutdown() async {
        await pool.shutdown()
    }

    /// The message routed back for the service's response.
    private static func reply(_ response: HTTPResponseMessage) -> Message {
        var reply = Message(status: Int(response.head.status.code))
        for (name, value) in response.head.headers {
            let lower = name.lowercased()
            if !reserved.contains(lower) { reply.headers[lower] = value }
        }
        reply.body = response.body.readableBytes > 0 ? response.body : nil
        return reply
    }

    private func makeRequest(_ message: Message) -> HTTPRequestMessage {
        let (method, uri) = HTTPRequestEncoding.methodAndURI(of: message)
        let hasBody = (message.body?.readableBytes ?? 0) > 0
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

/// How an `http` adapter writes a message as an HTTP/1.1 request (see ``HttpAdapter`` for the mapping).
struct HTTPRequestEncoding: Sendable {
    /// The `host` header: the target's `HOST:PORT`.
    let host: String
    /// The target URL's path, put before the request's.
    let basePath: String

    /// The method and the path of the request for `message`.
    static func methodAndURI(of message: Message) -> (method: String, uri: String) {
        let hasBody = (message.body?.readableBytes ?? 0) > 0
        var method = "GET"
        var uri = "/"
        if case .request(let requestMethod, let requestURI) = message.startLine {
            method = requestMethod
            uri = requestURI
        }
        let methodHeader = message.headers[HeaderName.httpMethod]
        if let methodHeader { method = methodHeader.uppercased() }
        if let path = message.headers[HeaderName.httpPath] { uri = path.hasPrefix("/") ? path : "/" + path }
        if method == "GET" && hasBody && methodHeader == nil { method = "POST" }
        return (method, uri)
    }

    /// Writes the request for `message` into `buffer`, straight from its headers (no `HTTPHeaders` built, nothing
    /// validated twice); returns its method. A header whose name or value holds a CR, LF or NUL (which no zbus parser
    /// lets in, but code may set) is left out rather than allowed to split the request.
    func write(_ message: Message, into buffer: inout ByteBuffer) -> HTTPMethod {
        let (method, uri) = Self.methodAndURI(of: message)
        let bodyLength = message.body?.readableBytes ?? 0
        buffer.writeString(method)
        buffer.writeStaticString(" ")
        buffer.writeString(basePath)
        buffer.writeString(uri)
        buffer.writeStaticString(" HTTP/1.1\r\nhost: ")
        buffer.writeString(host)
        buffer.writeStaticString("\r\n")
        for (name, value) in message.headers where !HttpAdapter.reserved.contains(name) {
            guard Self.isSafe(name), Self.isSafe(value) else { continue }
            buffer.writeString(name)
            buffer.writeStaticString(": ")
            buffer.writeString(value)
            buffer.writeStaticString("\r\n")
        }
        buffer.writeStaticString("content-length: ")
        buffer.writeString(String(bodyLength))
        buffer.writeStaticString("\r\n\r\n")
        if bodyLength > 0, var body = message.body { buffer.writeBuffer(&body) }
        return HTTPMethod(rawValue: method)
    }

    private static func isSafe(_ text: String) -> Bool {
        !text.utf8.contains { $0 == UInt8(ascii: "\r") || $0 == UInt8(ascii: "\n") || $0 == 0 }
    }
}

/// The codec of an `http` adapter's loop connection: writes a ``Message`` as one HTTP/1.1 request and turns the
/// response into the ``Message`` routed back (its status, its headers but the reserved ones, its body); closes the
/// connection after a response that does not keep it alive.
final class HTTPMessageExchangeCodec: ChannelDuplexHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias InboundOut = Message
    typealias OutboundIn = Message
    typealias OutboundOut = HTTPClientRequestPart

    private let encoding: HTTPRequestEncoding
    private let maxReply: Int
    private var head: HTTPResponseHead?
    private var body: ByteBuffer?
    /// A response over `maxReply` was refused: its remaining parts are dropped (the connection is closing).
    private var refused = false

    init(encoding: HTTPRequestEncoding, maxReply: Int) {
        self.encoding = encoding
        self.maxReply = maxReply
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let message = unwrapOutboundIn(data)
        var bytes = context.channel.allocator.buffer(capacity: 256 + (message.body?.readableBytes ?? 0))
        let method = encoding.write(message, into: &bytes)
        // The head only tells the response decoder the method; the bytes carry the request.
        context.write(wrapOutboundOut(.head(HTTPRequestHead(version: .http1_1, method: method, uri: ""))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(bytes))), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !refused else { return }
        switch unwrapInboundIn(data) {
        case .head(let responseHead):
            if responseHead.status == .continue { return }  // 100 Continue is not the answer
            head = responseHead
            body = nil
        case .body(var part):
            // Refused as soon as it is known to be too large: a service streaming without end must not fill memory.
            guard (body?.readableBytes ?? 0) + part.readableBytes <= maxReply else {
                refused = true
                head = nil
                body = nil
                context.fireErrorCaught(HTTPReplyTooLarge(limit: maxReply))
                return
            }
            if body == nil { body = part } else { body!.writeBuffer(&part) }
        case .end:
            guard let responseHead = head else { return }
            head = nil
            var reply = Message(status: Int(responseHead.status.code))
            // Room for the route's headers and the node's stamps too, so the headers grow only once.
            reply.headers.reserveCapacity(responseHead.headers.count + 9)
            for (name, value) in responseHead.headers {
                let lower = name.lowercased()
                if !HttpAdapter.reserved.contains(lower) { reply.headers[lower] = value }
            }
            if let body, body.readableBytes > 0 { reply.body = body }
            body = nil
            context.fireChannelRead(wrapInboundOut(reply))
            if !responseHead.isKeepAlive { context.close(promise: nil) }
        }
    }
}

/// Next to the socket on an `http` adapter's loop connection: passes the request's bytes on and drops the head that
/// only informed the response decoder.
final class HTTPRequestBytesWriter: ChannelOutboundHandler {
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = ByteBuffer

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .body(.byteBuffer(let bytes)):
            context.write(wrapOutboundOut(bytes), promise: promise)
        case .body(.fileRegion(let region)):
            context.write(NIOAny(IOData.fileRegion(region)), promise: promise)
        case .head, .end:
            promise?.succeed(())
        }
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

    private let maxReply: Int
    private var head: HTTPResponseHead?
    private var body = ByteBuffer()
    /// A response over `maxReply` was refused: its remaining parts are dropped (the connection is closing).
    private var refused = false

    init(maxReply: Int) {
        self.maxReply = maxReply
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        context.write(wrapOutboundOut(.head(request.head)), promise: nil)
        if let body = request.body { context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil) }
        context.write(wrapOutboundOut(.end(nil)), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !refused else { return }
        switch unwrapInboundIn(data) {
        case .head(let responseHead):
            if responseHead.status == .continue { return }  // 100 Continue is not the answer
            head = responseHead
            body.clear()
        case .body(var part):
            guard body.readableBytes + part.readableBytes <= maxReply else {
                refused = true
                head = nil
                body = ByteBuffer()
                context.fireErrorCaught(HTTPReplyTooLarge(limit: maxReply))
                return
            }
            body.writeBuffer(&part)
        case .end:
            guard let responseHead = head else { return }
            head = nil
            context.fireChannelRead(wrapInboundOut(HTTPResponseMessage(head: responseHead, body: body)))
            body = ByteBuffer()
        }
    }
}

/// A legacy HTTP response whose body passed the adapter's `max_reply`: the call fails (502) and the connection closes.
struct HTTPReplyTooLarge: Error, CustomStringConvertible {
    let limit: Int
    var description: String {
        "its response body is larger than the adapter's max_reply (\(limit) bytes); raise `max_reply` if such answers are expected"
    }
}
