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

    /// `target` (`http://HOST:PORT[/base-path]`), `max_reply` (the largest response body taken, default 32 MiB),
    /// `pipeline` (requests in flight on one connection, default 1: see ``PipelinedLegacyClient``).
    public var configKeys: [String] { ["target", "max_reply", "pipeline"] }

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
        let pipeline = try config.int("pipeline", in: 1...PipelinedLegacyClient.maxDepth) ?? 1
        return HttpAdapter(name: settings.name, target: target, basePath: basePath, connectTimeout: settings.timeout,
                           maxIdle: settings.maxInFlight, maxReply: maxReply, pipeline: pipeline)
    }
}

/// Calls a legacy HTTP/1.1 service over keep-alive connections: on the node's loops (``makeLoopCaller(on:timeout:)``)
/// or from tasks over a pool (``call(_:timeout:)``); both speak through ``HTTPExchangeCodec``.
final class HttpAdapter: TimedProxyAdapter, LoopProxyAdapter {
    var address: String { "http://\(target)\(basePath)" }

    private let name: String
    private let target: HostAndPort
    private let basePath: String
    private let connectTimeout: Duration
    private let pool: LegacyClientPool<Message, Message>
    private let maxReply: Int
    /// Requests in flight on one loop connection (1: one call per worker connection).
    let pipelineDepth: Int
    private let pipelined = PipelinedClients()

    init(name: String, target: HostAndPort, basePath: String, connectTimeout: Duration, maxIdle: Int,
         maxReply: Int = HttpAdapterFactory.defaultMaxReply, pipeline: Int = 1) {
        self.name = name
        self.pipelineDepth = pipeline
        self.target = target
        self.basePath = basePath
        self.connectTimeout = connectTimeout
        self.maxReply = maxReply
        let encoding = HTTPRequestEncoding(host: target.description, basePath: basePath)
        // The codec closes a connection the service will not keep, so a pooled one is checked in only while open.
        pool = LegacyClientPool(
            service: name, address: target, connectTimeout: connectTimeout, maxIdle: maxIdle,
            configure: { channel in
                try channel.pipeline.syncOperations.addHandler(HTTPExchangeCodec(encoding: encoding, maxReply: maxReply))
            },
            notRepeatable: HTTPRequestEncoding.notRepeatable)
    }

    func call(_ request: Message) async throws -> Message {
        try await call(request, timeout: .seconds(60))
    }

    func call(_ request: Message, timeout: Duration) async throws -> Message {
        try check(request)
        return try await pool.exchange(request, timeout: timeout)
    }

    func makeLoopCaller(on eventLoop: any EventLoop, timeout: Duration) -> any LoopLegacyCaller {
        let encoding = HTTPRequestEncoding(host: target.description, basePath: basePath)
        let maxReply = self.maxReply
        let configure: @Sendable (any Channel) throws -> Void = { channel in
            try channel.pipeline.syncOperations.addHandler(HTTPExchangeCodec(encoding: encoding, maxReply: maxReply))
        }
        let check: @Sendable (Message) throws -> Void = { [self] message in try self.check(message) }
        // The codec is called directly by the handler behind it: no `NIOAny` box per request and reply.
        let exchange = HTTPExchangeCodec.inPipeline
        guard pipelineDepth > 1 else {
            return LoopLegacyClient(on: eventLoop, service: name, address: target, connectTimeout: connectTimeout,
                                    timeout: timeout, configure: configure, exchange: exchange, check: check,
                                    notRepeatable: HTTPRequestEncoding.notRepeatable)
        }
        return pipelined.caller(on: eventLoop) {
            PipelinedLegacyClient(
                on: eventLoop, service: name, address: target, connectTimeout: connectTimeout, timeout: timeout,
                depth: pipelineDepth, configure: configure,
                exchange: exchange,
                check: check,
                // Sent again only when the service most likely closed an idle connection as it was reused, and
                // only a request that may be repeated (RFC 9110 9.2.2).
                retriable: { HTTPRequestEncoding.notRepeatable($0) == nil })
        }
    }

    /// Refuses (400, before connecting) a request whose method or path could not be sent as they are, or whose path
    /// could reach beyond the target's base path (``HTTPRequestEncoding/refusal(of:)``).
    private func check(_ request: Message) throws(ProxyError) {
        if let reason = HTTPRequestEncoding.refusal(of: request) { throw .badRequest(service: name, reason: reason) }
    }

    func shutdown() async {
        await pool.shutdown()
    }
}

/// How an `http` adapter writes a message as an HTTP/1.1 request (see ``HttpAdapter`` for the mapping).
struct HTTPRequestEncoding: Sendable {
    /// Whether a request with `method` may be sent twice with the same effect (RFC 9110 9.2.2).
    static func isIdempotent(_ method: String) -> Bool {
        ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"].contains(method)
    }

    /// The `host` header: the target's `HOST:PORT`.
    let host: String
    /// The target URL's path, put before the request's.
    let basePath: String
    /// What follows the path on every request: the version and the `host` line, joined once rather than per call.
    private let afterPath: String

    init(host: String, basePath: String) {
        self.host = host
        self.basePath = basePath
        self.afterPath = " HTTP/1.1\r\nhost: \(host)\r\n"
    }

    /// The method and the path of the request for `message`.
    static func methodAndURI(of message: Message) -> (method: String, uri: String) {
        let hasBody = (message.body?.readableBytes ?? 0) > 0
        var method = "GET"
        var uri = "/"
        if case .request(let requestMethod, let requestURI) = message.startLine {
            method = requestMethod
            uri = requestURI
        }
        // Read from the parser's slots rather than searched for (this runs twice a call).
        let methodHeader = message.httpMethod
        if let methodHeader {
            method = methodHeader.utf8.contains(where: { $0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "z") }) ? methodHeader.uppercased() : methodHeader
        }
        if let path = message.httpPath { uri = path }
        if method == "GET" && hasBody && methodHeader == nil { method = "POST" }
        return (method, uri)
    }

    /// Why the request for `message` may not be sent twice, or `nil` when its method is idempotent
    /// (``isIdempotent(_:)``), so that a kept connection the service closed after it is retried.
    static func notRepeatable(_ message: Message) -> String? {
        let method = methodAndURI(of: message).method
        return isIdempotent(method) ? nil : "\(method) is not idempotent"
    }

    /// Why the request for `message` may not be sent, or `nil`: a method that is not an HTTP token (a space in it
    /// would rewrite the request line), or a path that is not a plain absolute path below the target's base path.
    ///
    /// The path is appended to the base path as it is, so anything a service, or a proxy in front of it, could resolve
    /// to another place is refused rather than normalized (as a gateway does that forwards paths undecoded): a path
    /// that does not start with `/` (`http://evil/`, `..%2f`), one starting with `//` (read as a host by some
    /// servers), a `.` or `..` segment, a `\` (a `/` to some servers), an encoded `.`, `/` or `\` (`%2e`, `%2f`,
    /// `%5c`, which some servers decode before resolving), a `%` not followed by two hex digits; and anywhere in the
    /// target, control bytes, spaces and `#` (a fragment is never sent). The query string (after `?`) is otherwise
    /// passed through untouched.
    static func refusal(of message: Message) -> String? {
        let (method, uri) = methodAndURI(of: message)
        if method.isEmpty || !method.utf8.allSatisfy(ASCIIBytes.isTokenByte) {
            return "the method \(quoted(method)) is not an HTTP method token"
        }
        // Its 2xx answer makes the connection a tunnel (RFC 9110 9.3.6): no framed reply, and on a kept or pipelined
        // connection whatever followed would be read as other callers' answers.
        if method == "CONNECT" { return "the method CONNECT opens a tunnel, which the bus cannot carry" }
        guard let problem = pathProblem(uri) else { return nil }
        return "the path \(quoted(uri)) \(problem)"
    }

    /// What is wrong with `uri` as the request target below the base path, or `nil`.
    static func pathProblem(_ uri: String) -> String? {
        // Checked on every call: read in place, nothing allocated.
        ASCIIBytes.withUTF8(of: uri) { pathProblem(bytes: $0) }
    }

    private static func pathProblem(bytes: UnsafeBufferPointer<UInt8>) -> String? {
        guard bytes.first == UInt8(ascii: "/") else { return "does not start with '/'" }
        if bytes.count > 1 && bytes[1] == UInt8(ascii: "/") { return "starts with '//', which names a host to some servers" }
        let queryStart = bytes.firstIndex(of: UInt8(ascii: "?")) ?? bytes.count
        for byte in bytes {
            if byte < 0x20 || byte == 0x7F { return "holds a control byte" }
            if byte == UInt8(ascii: " ") { return "holds a space (encode it as %20)" }
            if byte == UInt8(ascii: "#") { return "holds a '#' (a fragment is never sent to a server)" }
        }
        var index = 0
        var segmentStart = 1
        while index <= queryStart {
            let byte = index < queryStart ? bytes[index] : UInt8(ascii: "/")
            switch byte {
            case UInt8(ascii: "/") where index > 0:
                let length = index - segmentStart
                if (length == 1 || length == 2) && bytes[segmentStart] == UInt8(ascii: ".")
                    && bytes[index - 1] == UInt8(ascii: ".") {
                    return "has a dot segment ('.' or '..'), which could leave the target's base path"
                }
                segmentStart = index + 1
            case UInt8(ascii: "\\"):
                return "holds a '\\', which some servers read as '/'"
            case UInt8(ascii: "%"):
                guard index + 2 < queryStart, let high = ASCIIBytes.hexValue(bytes[index + 1]), let low = ASCIIBytes.hexValue(bytes[index + 2]) else {
                    return "holds a '%' not followed by two hex digits"
                }
                switch high << 4 | low {
                case UInt8(ascii: "."), UInt8(ascii: "/"), UInt8(ascii: "\\"):
                    return "holds an encoded '.', '/' or '\\' (%2e, %2f, %5c), which some servers decode before resolving the path"
                default:
                    break
                }
            default:
                break
            }
            index += 1
        }
        return nil
    }

    /// `text` in quotes for a refusal, control bytes escaped and cut at 200 characters.
    private static func quoted(_ text: String) -> String {
        let cut = text.count > 200 ? text.prefix(200) + "..." : Substring(text)
        return "'" + cut.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? $0.escaped(asASCII: true) : String($0) }.joined() + "'"
    }

    /// Writes the request for `message` into `buffer`, straight from its headers (no `HTTPHeaders` built, nothing
    /// validated twice); returns its method. A header whose name or value holds a CR, LF or NUL (which no zbus parser
    /// lets in, but code may set) is left out rather than allowed to split the request.
    func write(_ message: Message, into buffer: inout ByteBuffer) -> HTTPMethod {
        let (method, uri) = Self.methodAndURI(of: message)
        let bodyLength = message.body?.readableBytes ?? 0
        writeRequestLine(method: method, uri: uri, into: &buffer)
        message.headers.forEachField { name, value in
            if !ReservedHeaders.contains(name) { Self.writeHeader(name, value, into: &buffer) }
        }
        if bodyLength == 0 {
            buffer.writeStaticString("content-length: 0\r\n\r\n")
        } else {
            buffer.writeStaticString("content-length: ")
            buffer.writeString(String(bodyLength))
            buffer.writeStaticString("\r\n\r\n")
            if var body = message.body { buffer.writeBuffer(&body) }
        }
        return HTTPMethod(rawValue: method)
    }

    /// Writes `METHOD SP base-path path SP HTTP/1.1`, its CRLF and the `host` line with one copy (a write per part
    /// cost more than the bytes: each checks the buffer's capacity and uniqueness).
    private func writeRequestLine(method: String, uri: String, into buffer: inout ByteBuffer) {
        ASCIIBytes.withUTF8(of: method) { method in
            ASCIIBytes.withUTF8(of: basePath) { basePath in
                ASCIIBytes.withUTF8(of: uri) { uri in
                    ASCIIBytes.withUTF8(of: afterPath) { afterPath in
                        let total = method.count + 1 + basePath.count + uri.count + afterPath.count
                        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: total) { target in
                            var cursor = target.baseAddress!
                            func put(_ part: UnsafeBufferPointer<UInt8>) {
                                guard part.count > 0 else { return }
                                cursor.copyMemory(from: part.baseAddress!, byteCount: part.count)
                                cursor += part.count
                            }
                            put(method)
                            cursor.storeBytes(of: UInt8(ascii: " "), as: UInt8.self)
                            cursor += 1
                            put(basePath)
                            put(uri)
                            put(afterPath)
                            return total
                        }
                    }
                }
            }
        }
    }

    /// Writes `name: value` and its CRLF with one copy into the buffer (four writes each cost more than the bytes).
    private static func writeHeader(_ name: String, _ value: String, into buffer: inout ByteBuffer) {
        ASCIIBytes.withUTF8(of: name) { name in
            ASCIIBytes.withUTF8(of: value) { value in
                guard !name.isEmpty, isSafe(name), isSafe(value) else { return }
                buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: name.count + value.count + 4) { target in
                    let base = target.baseAddress!
                    base.copyMemory(from: name.baseAddress!, byteCount: name.count)
                    base.storeBytes(of: UInt16(bigEndian: 0x3A20), toByteOffset: name.count, as: UInt16.self)  // ": "
                    if value.count > 0 { (base + name.count + 2).copyMemory(from: value.baseAddress!, byteCount: value.count) }
                    base.storeBytes(of: UInt16(bigEndian: 0x0D0A), toByteOffset: name.count + 2 + value.count, as: UInt16.self)
                    return name.count + value.count + 4
                }
            }
        }
    }

    private static func isSafe(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        !bytes.contains { $0 == UInt8(ascii: "\r") || $0 == UInt8(ascii: "\n") || $0 == 0 }
    }

}

/// The one handler of an `http` adapter's connection: writes each ``Message`` as an HTTP/1.1 request (see
/// ``HTTPRequestEncoding``) and reads each response into the ``Message`` routed back (``HTTPResponseParser``); closes
/// the connection after a response that does not keep it alive, and fails the call (as an error caught) on a response
/// it cannot read.
///
/// Responses answer the requests written, in order (one at a time, or several when the adapter pipelines): bytes
/// beyond the responses owed answer nothing and close the connection, so they are never read as a later call's answer.
///
/// Bytes in, messages out, in one handler: nothing generic, no typed HTTP parts passed between handlers.
final class HTTPExchangeCodec: ChannelDuplexHandler, DirectMessageExchange {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = Message
    typealias OutboundIn = Message
    typealias OutboundOut = ByteBuffer

    private let encoding: HTTPRequestEncoding
    private var parser: HTTPResponseParser
    /// Input not read yet: part of a head or of a chunk line (bounded by the parser's head limit).
    private var unread: ByteBuffer?
    /// A response could not be read, or one closed the connection: whatever else comes is dropped.
    private var done = false
    /// The methods of the requests written whose responses have not come yet, oldest first (the parser must know
    /// which response answers a `HEAD`).
    private var owed = CircularBuffer<HTTPMethod>(initialCapacity: 4)
    /// Its context while it is in a pipeline, for ``writeRequest(_:)``.
    private var context: ChannelHandlerContext?
    var replySink: ((Message) -> Void)?

    init(encoding: HTTPRequestEncoding, maxReply: Int) {
        self.encoding = encoding
        parser = HTTPResponseParser(maxBody: maxReply)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        replySink = nil
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        write(unwrapOutboundIn(data), context: context, promise: promise)
    }

    func writeRequest(_ request: Message) {
        // Out of the pipeline, nothing is written: the connection's close fails its calls.
        guard let context else { return }
        write(request, context: context, promise: nil)
    }

    private func write(_ message: Message, context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        var bytes = context.channel.allocator.buffer(capacity: 256 + (message.body?.readableBytes ?? 0))
        let method = encoding.write(message, into: &bytes)
        if owed.isEmpty { parser.requestWritten(method: method) }
        owed.append(method)
        context.write(wrapOutboundOut(bytes), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !done else { return }
        var input = unwrapInboundIn(data)
        if owed.isEmpty && unread == nil {
            // Bytes while no request is in flight answer nothing (a stray CRLF aside): kept, they would be read as
            // the start of the next call's response.
            Self.skipLineEnds(&input)
            guard input.readableBytes == 0 else {
                done = true
                context.fireErrorCaught(HTTPResponseError.unsolicited(bytes: input.readableBytes))
                return
            }
            return
        }
        if var unread = unread.take() {
            unread.writeBuffer(&input)
            input = unread
        }
        var answered = false
        // Only requests written before these bytes came can be answered by them, whatever is written meanwhile.
        var answerable = owed.count
        do {
            while !done, answerable > 0, let response = try parser.next(&input) {
                answerable -= 1
                fire(response, context: context)
                answered = true
            }
        } catch {
            done = true
            context.fireErrorCaught(error)
            return
        }
        guard !done else { return }
        if answered && answerable == 0 {
            // Every request written is answered, so bytes after the last response (but the CRLFs some servers add)
            // answer nothing: kept, they would be read as the start of the next call's response and fail it. The
            // answers stand; the connection is not trusted with another request.
            Self.skipLineEnds(&input)
            if input.readableBytes > 0 {
                done = true
                context.close(promise: nil)
                return
            }
        }
        if input.readableBytes > 0 {
            input.discardReadBytes()
            unread = input
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !done {
            do {
                if !owed.isEmpty, let response = try parser.endOfInput() { fire(response, context: context) }
            } catch {
                // Cut short mid-response: a failure to read the answer (502), not a stale connection to retry on.
                done = true
                context.fireErrorCaught(error)
            }
        }
        context.fireChannelInactive()
    }

    private static func skipLineEnds(_ input: inout ByteBuffer) {
        while let byte = input.readableBytesView.first, byte == UInt8(ascii: "\r") || byte == UInt8(ascii: "\n") {
            input.moveReaderIndex(forwardBy: 1)
        }
    }

    private func fire(_ response: HTTPResponseParser.Response, context: ChannelHandlerContext) {
        _ = owed.popFirst()
        if let next = owed.first { parser.requestWritten(method: next) }
        if let replySink { replySink(response.message) } else { context.fireChannelRead(wrapInboundOut(response.message)) }
        if !response.keepAlive {
            done = true
            context.fireUserInboundEventTriggered(LegacyAnswerClosesConnection())
            context.close(promise: nil)
        }
    }
}

