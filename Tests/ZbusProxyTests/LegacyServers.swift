import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// A legacy service started in the test process on 127.0.0.1 (port 0 unless a port is given, to come back on it).
final class LegacyServer: Sendable {
    let channel: any Channel
    /// The accepted connections, closed by ``stop()`` as a dying process would.
    private let children: NIOLockedValueBox<[any Channel]>
    var port: Int { channel.localAddress!.port! }

    private init(channel: any Channel, children: NIOLockedValueBox<[any Channel]>) {
        self.channel = channel
        self.children = children
    }

    /// Stops listening and closes every open connection.
    func stop() async {
        try? await channel.close()
        for child in children.withLockedValue({ $0 }) { try? await child.close() }
    }

    private static func bind(port: Int, _ initializer: @escaping @Sendable (any Channel) throws -> Void) async throws -> LegacyServer {
        let children = NIOLockedValueBox<[any Channel]>([])
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                children.withLockedValue { $0.append(channel) }
                return channel.eventLoop.makeCompletedFuture { try initializer(channel) }
            }
            .bind(host: "127.0.0.1", port: port).get()
        return LegacyServer(channel: channel, children: children)
    }

    /// An HTTP/1.1 service: `/slow` answers after 3 s, `/status/N` answers status N, anything else echoes the request
    /// as `legacy METHOD URI body=BODY x-test=HEADER` with header `x-legacy: yes`.
    static func http(port: Int = 0) async throws -> LegacyServer {
        try await bind(port: port) { channel in
            try channel.pipeline.syncOperations.configureHTTPServerPipeline()
            try channel.pipeline.syncOperations.addHandler(LegacyHTTPHandler())
        }
    }

    /// A service whose connections get the handlers `initializer` adds.
    static func custom(_ initializer: @escaping @Sendable (any Channel) throws -> Void) async throws -> LegacyServer {
        try await bind(port: 0, initializer)
    }

    /// A service that answers any bytes with `reply` and closes.
    static func raw(_ reply: [UInt8]) async throws -> LegacyServer {
        try await bind(port: 0) { channel in
            try channel.pipeline.syncOperations.addHandler(RecordServerHandler(extract: { buffer in
                buffer.readableBytes > 0 ? buffer.readSlice(length: buffer.readableBytes) : nil
            }, respond: { _ in (ByteBuffer(bytes: reply), true) }))
        }
    }

    /// A framed TCP service answering each record `echo:RECORD` (fixed framing: the record upper-cased).
    static func framedEcho(_ framing: String, recordSize: Int = 8) async throws -> LegacyServer {
        try await bind(port: 0) { channel in
            try channel.pipeline.syncOperations.addHandler(RecordServerHandler(extract: { buffer in
                TestFraming.extract(framing, recordSize: recordSize, from: &buffer)
            }, respond: { record in
                let text = String(buffer: record)
                let answer = framing == "fixed" ? text.uppercased() : "echo:\(text)"
                return (TestFraming.frame(framing, ByteBuffer(string: answer)), false)
            }))
        }
    }

    /// A memcached-text-style key-value service: `get k` → `VALUE v` | `NOT_FOUND`, `set k v` → `STORED`.
    static func kvLine() async throws -> LegacyServer {
        let store = NIOLockedValueBox<[String: String]>([:])
        return try await bind(port: 0) { channel in
            try channel.pipeline.syncOperations.addHandler(RecordServerHandler(extract: { buffer in
                TestFraming.extract("newline", recordSize: 0, from: &buffer)
            }, respond: { record in
                let words = String(buffer: record).split(separator: " ", maxSplits: 2).map(String.init)
                let answer: String
                switch (words.first, words.count) {
                case ("get", 2): answer = store.withLockedValue { $0[words[1]] }.map { "VALUE \($0)" } ?? "NOT_FOUND"
                case ("set", 3):
                    store.withLockedValue { $0[words[1]] = words[2] }
                    answer = "STORED"
                default: answer = "ERROR unknown command"
                }
                return (ByteBuffer(string: answer + "\r\n"), false)
            }))
        }
    }
}

/// The test's own framing code, written independently of the adapter's.
enum TestFraming {
    static func extract(_ framing: String, recordSize: Int, from buffer: inout ByteBuffer) -> ByteBuffer? {
        switch framing {
        case "newline":
            guard let index = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else { return nil }
            var line = buffer.readSlice(length: index - buffer.readerIndex)!
            buffer.moveReaderIndex(forwardBy: 1)
            if line.readableBytesView.last == UInt8(ascii: "\r") { line.moveWriterIndex(to: line.writerIndex - 1) }
            return line
        case "length2":
            guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt16.self), buffer.readableBytes >= 2 + Int(length) else { return nil }
            buffer.moveReaderIndex(forwardBy: 2)
            return buffer.readSlice(length: Int(length))
        case "length4":
            guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self), buffer.readableBytes >= 4 + Int(length) else { return nil }
            buffer.moveReaderIndex(forwardBy: 4)
            return buffer.readSlice(length: Int(length))
        default:
            return buffer.readableBytes >= recordSize ? buffer.readSlice(length: recordSize) : nil
        }
    }

    static func frame(_ framing: String, _ record: ByteBuffer) -> ByteBuffer {
        var out = ByteBuffer()
        var record = record
        switch framing {
        case "newline":
            out.writeBuffer(&record)
            out.writeString("\n")
        case "length2":
            out.writeInteger(UInt16(record.readableBytes))
            out.writeBuffer(&record)
        case "length4":
            out.writeInteger(UInt32(record.readableBytes))
            out.writeBuffer(&record)
        default:
            out.writeBuffer(&record)
        }
        return out
    }
}

/// Cuts records from the stream and answers each (optionally closing after the answer).
final class RecordServerHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private let extract: @Sendable (inout ByteBuffer) -> ByteBuffer?
    private let respond: @Sendable (ByteBuffer) -> (ByteBuffer, close: Bool)
    private var buffer = ByteBuffer()

    init(extract: @escaping @Sendable (inout ByteBuffer) -> ByteBuffer?, respond: @escaping @Sendable (ByteBuffer) -> (ByteBuffer, close: Bool)) {
        self.extract = extract
        self.respond = respond
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        buffer.writeBuffer(&bytes)
        while let record = extract(&buffer) {
            let (answer, close) = respond(record)
            if close {
                context.writeAndFlush(wrapOutboundOut(answer), promise: nil)
                context.close(promise: nil)
                return
            }
            context.writeAndFlush(wrapOutboundOut(answer), promise: nil)
        }
    }
}

/// The shape of the test services' HTTP handlers behind NIO's server pipeline: collects each request's head and body
/// and hands the whole request to ``request(_:body:context:)``; ``respond(_:to:status:headers:body:close:)`` writes a
/// complete response.
class WholeRequestHTTPHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    private var head: HTTPRequestHead?
    private var body = ByteBuffer()

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let requestHead):
            head = requestHead
            body.clear()
        case .body(var part):
            body.writeBuffer(&part)
        case .end:
            guard let head else { return }
            request(head, body: body, context: context)
        }
    }

    /// One whole request (overridden).
    func request(_ head: HTTPRequestHead, body: ByteBuffer, context: ChannelHandlerContext) {}

    /// Declared here so that a subclass can override it: the protocol's default would be the one called otherwise.
    func channelInactive(context: ChannelHandlerContext) {
        context.fireChannelInactive()
    }

    /// Writes a response to `head` with a `content-length`, and `connection: close` (then closes) when `close`.
    func respond(_ context: ChannelHandlerContext, to head: HTTPRequestHead, status: HTTPResponseStatus = .ok,
                 headers extra: [(String, String)] = [], body text: String, close: Bool = false) {
        var headers = HTTPHeaders(extra)
        headers.add(name: "content-length", value: String(text.utf8.count))
        if close { headers.add(name: "connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: text)))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        if close { context.close(promise: nil) }
    }
}

/// The legacy HTTP service's behaviour.
final class LegacyHTTPHandler: WholeRequestHTTPHandler, @unchecked Sendable {
    override func request(_ head: HTTPRequestHead, body: ByteBuffer, context: ChannelHandlerContext) {
        let text = "legacy \(head.method.rawValue) \(head.uri) body=\(String(buffer: body)) x-test=\(head.headers["x-test"].first ?? "-")"
        var status = HTTPResponseStatus.ok
        if head.uri.hasPrefix("/status/"), let code = Int(head.uri.dropFirst("/status/".count)) {
            status = HTTPResponseStatus(statusCode: code)
        }
        let respond = { [self] in
            var headers = [("content-type", "text/plain"), ("x-legacy", "yes")]
            if !head.isKeepAlive { headers.append(("connection", "close")) }
            self.respond(context, to: head, status: status, headers: headers, body: text)
        }
        if head.uri == "/slow" {
            context.eventLoop.assumeIsolated().scheduleTask(in: .seconds(3)) { respond() }
        } else {
            respond()
        }
    }
}
