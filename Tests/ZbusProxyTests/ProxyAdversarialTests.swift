import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import Testing
import Zbus
import ZbusClient
import ZbusRPC
import ZbusTestSupport

/// Legacy services that misbehave, in the test process on OS-chosen ports.
enum MisbehavingService {
    /// An HTTP/1.1 service that answers each request twice, in one write, after `delay`: `id=BODY`, then `dup=BODY`.
    static func httpAnsweringTwice(log: ServiceLog, delay: TimeAmount) async throws -> LegacyServer {
        try await LegacyServer.custom { channel in
            // Without NIO's server pipeline handler, which (rightly) refuses a second response to one request.
            try channel.pipeline.syncOperations.addHandler(HTTPResponseEncoder())
            try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(HTTPRequestDecoder()))
            try channel.pipeline.syncOperations.addHandler(TwiceHTTPHandler(log: log, delay: delay))
        }
    }

    /// A newline-framed service that answers each record twice, in one write, after `delay`: `echo:R`, then `dup:R`
    /// (only `echo:R` unless `twice`).
    static func lineAnsweringTwice(log: ServiceLog, delay: TimeAmount, twice: Bool = true) async throws -> LegacyServer {
        try await LegacyServer.custom { channel in
            try channel.pipeline.syncOperations.addHandler(TwiceLineHandler(log: log, delay: delay, twice: twice))
        }
    }

    /// An HTTP/1.1 service that says more than its responses' framing allows: to a `HEAD` it sends the body too, and
    /// to a request whose body is `overlong` it sends 3 bytes more than its `content-length` says. Otherwise it answers
    /// `answer=BODY`.
    static func httpSayingTooMuch(log: ServiceLog) async throws -> LegacyServer {
        try await LegacyServer.custom { channel in
            try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(HTTPRequestDecoder()))
            try channel.pipeline.syncOperations.addHandler(TooMuchHTTPHandler(log: log))
        }
    }

    /// An HTTP/1.1 service that answers `METHOD URI BODY` (logged so), except that a request whose path starts with
    /// `/close` arriving on a connection that already served one is read and left unanswered: the connection is closed
    /// (a service that crashes on it, or closes a kept connection as the request comes in).
    static func httpClosingKeptConnections(log: ServiceLog) async throws -> LegacyServer {
        try await LegacyServer.custom { channel in
            try channel.pipeline.syncOperations.addHandler(HTTPResponseEncoder())
            try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(HTTPRequestDecoder()))
            try channel.pipeline.syncOperations.addHandler(ClosingHTTPHandler(log: log))
        }
    }

    /// A newline-framed service answering `echo:R`, except that a record starting with `close` arriving on a
    /// connection that already served one is read and left unanswered: the connection is closed.
    static func lineClosingKeptConnections(log: ServiceLog) async throws -> LegacyServer {
        try await LegacyServer.custom { channel in
            let served = NIOLoopBoundBox(0, eventLoop: channel.eventLoop)
            try channel.pipeline.syncOperations.addHandler(RecordServerHandler(
                extract: { TestFraming.extract("newline", recordSize: 0, from: &$0) },
                respond: { record in
                    let text = String(buffer: record)
                    log.arrived(text)
                    // Closed without an answer (nothing written before the close).
                    if text.hasPrefix("close") && served.value > 0 { return (ByteBuffer(), true) }
                    served.value += 1
                    return (ByteBuffer(string: "echo:\(text)\n"), false)
                }))
        }
    }

    /// An HTTP/1.1 service whose every response has a `bodyBytes`-byte body.
    static func httpAnsweringLarge(bodyBytes: Int) async throws -> LegacyServer {
        try await LegacyServer.custom { channel in
            try channel.pipeline.syncOperations.configureHTTPServerPipeline()
            try channel.pipeline.syncOperations.addHandler(LargeHTTPHandler(bodyBytes: bodyBytes))
        }
    }
}

final class TwiceHTTPHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    private let log: ServiceLog
    private let delay: TimeAmount
    private var body = ByteBuffer()

    init(log: ServiceLog, delay: TimeAmount) {
        self.log = log
        self.delay = delay
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head: body.clear()
        case .body(var part): body.writeBuffer(&part)
        case .end:
            let text = String(buffer: body)
            log.arrived(text)
            let context = NIOLoopBound(context, eventLoop: context.eventLoop)
            context.value.eventLoop.assumeIsolated().scheduleTask(in: delay) { [self] in
                for answer in ["id=\(text)", "dup=\(text)"] {
                    let headers = HTTPHeaders([("content-length", String(answer.utf8.count))])
                    context.value.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
                    context.value.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: answer)))), promise: nil)
                    context.value.write(wrapOutboundOut(.end(nil)), promise: nil)
                }
                context.value.flush()
            }
        }
    }
}

final class TooMuchHTTPHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = ByteBuffer
    private let log: ServiceLog
    private var method = HTTPMethod.GET
    private var body = ByteBuffer()

    init(log: ServiceLog) {
        self.log = log
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            method = head.method
            body.clear()
        case .body(var part): body.writeBuffer(&part)
        case .end:
            let text = String(buffer: body)
            log.arrived("\(method.rawValue) \(text)")
            let answer = "answer=\(text)"
            let length = text == "overlong" ? answer.utf8.count - 3 : answer.utf8.count
            // Raw bytes: NIO's server encoder would not send a body to a HEAD.
            let response = "HTTP/1.1 200 OK\r\ncontent-length: \(length)\r\n\r\n\(answer)"
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: response)), promise: nil)
        }
    }
}

final class TwiceLineHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private let log: ServiceLog
    private let delay: TimeAmount
    private let twice: Bool
    private var buffer = ByteBuffer()

    init(log: ServiceLog, delay: TimeAmount, twice: Bool) {
        self.log = log
        self.delay = delay
        self.twice = twice
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        buffer.writeBuffer(&bytes)
        while let record = TestFraming.extract("newline", recordSize: 0, from: &buffer) {
            let text = String(buffer: record)
            log.arrived(text)
            let context = NIOLoopBound(context, eventLoop: context.eventLoop)
            context.value.eventLoop.assumeIsolated().scheduleTask(in: delay) { [self] in
                let answer = twice ? "echo:\(text)\ndup:\(text)\n" : "echo:\(text)\n"
                context.value.writeAndFlush(wrapOutboundOut(ByteBuffer(string: answer)), promise: nil)
            }
        }
    }
}

final class ClosingHTTPHandler: WholeRequestHTTPHandler, @unchecked Sendable {
    private let log: ServiceLog
    private var served = 0

    init(log: ServiceLog) {
        self.log = log
    }

    override func request(_ head: HTTPRequestHead, body: ByteBuffer, context: ChannelHandlerContext) {
        let text = "\(head.method.rawValue) \(head.uri) \(String(buffer: body))"
        log.arrived(text)
        if head.uri.hasPrefix("/close") && served > 0 {
            context.close(promise: nil)
            return
        }
        served += 1
        respond(context, to: head, body: text)
    }
}

final class LargeHTTPHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    private let bodyBytes: Int

    init(bodyBytes: Int) {
        self.bodyBytes = bodyBytes
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .end = unwrapInboundIn(data) else { return }
        let headers = HTTPHeaders([("content-length", String(bodyBytes))])
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
        var left = bodyBytes
        let chunk = ByteBuffer(repeating: UInt8(ascii: "x"), count: 1 << 20)
        while left > 0 {
            let part = chunk.getSlice(at: 0, length: min(left, chunk.readableBytes))!
            context.write(wrapOutboundOut(.body(.byteBuffer(part))), promise: nil)
            left -= part.readableBytes
        }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }
}

/// Counts the replies a node writes back on one connection (each starts with `HTTP/1.1 `).
final class ReplyCounter: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    let count = NIOLockedValueBox(0)
    let closed = NIOLockedValueBox(false)
    private var tail: [UInt8] = []
    private static let marker = Array("HTTP/1.1 ".utf8)

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = tail + Array(unwrapInboundIn(data).readableBytesView)
        var found = 0
        var index = 0
        while index + Self.marker.count <= bytes.count {
            if bytes[index] == Self.marker[0] && Array(bytes[index..<index + Self.marker.count]) == Self.marker {
                found += 1
                index += Self.marker.count
            } else {
                index += 1
            }
        }
        tail = Array(bytes[max(index, bytes.count - Self.marker.count + 1)...])
        count.withLockedValue { $0 += found }
    }

    func channelInactive(context: ChannelHandlerContext) {
        closed.withLockedValue { $0 = true }
    }
}

/// Writes `count` produces (`ack: 0`, each with its own id) of `body` to `mq` on one connection, in one go.
func flood(port: Int, mq: String, body: String, count: Int) async throws -> (channel: any Channel, replies: ReplyCounter) {
    let counter = ReplyCounter()
    let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(counter) }
        }
        .connect(host: "127.0.0.1", port: port).get()
    var buffer = ByteBuffer()
    for index in 0..<count {
        buffer.writeString("POST / HTTP/1.1\r\ncmd: produce\r\nmq: \(mq)\r\nack: 0\r\nid: flood-\(index)\r\ncontent-length: \(body.utf8.count)\r\n\r\n\(body)")
    }
    try await channel.writeAndFlush(buffer)
    return (channel, counter)
}

@Suite("Proxy adapters against misbehaving services and nodes", .serialized, .blockingIO(.heavy))
struct ProxyAdversarialTests {
    @Test("an http caller's path cannot leave the target's base path: dot segments, encoded dots and slashes, a backslash, an absolute URL or //host are refused with 400 before the service sees them; query strings pass")
    func pathCannotEscapeTheBasePath() async throws {
        let legacy = try await LegacyServer.http()
        let node = try startNode("""
            modules:
              - module: mq
              - module: proxy
                adapters:
                  - { name: api, kind: http, mq: Api, target: "http://127.0.0.1:\(legacy.port)/api", workers: 1, timeout: 5s }
                  - { name: api-tasks, kind: http, mq: ApiTasks, target: "http://127.0.0.1:\(legacy.port)/api", workers: 2, max_in_flight: 1, timeout: 5s }
            """)
        defer { node.cleanUp() }
        let bus = try BusCaller(port: node.port)
        let escapes: [(String, String)] = [
            ("/../admin", "dot segment"),
            ("/v1/../../admin", "dot segment"),
            ("/%2e%2e/admin", "encoded '.', '/'"),
            ("/%2E%2e%2Fadmin", "encoded '.', '/'"),
            ("..%2fadmin", "does not start with '/'"),
            ("/..\\admin", "'\\'"),
            ("http://evil/", "does not start with '/'"),
            ("//evil/x", "starts with '//'"),
            ("/admin#x", "'#'"),
        ]
        for mq in ["Api", "ApiTasks"] {
            for (path, reason) in escapes {
                let reply = try await bus.call(mq, "", headers: [("path", path)])
                #expect(reply.status == 400, "\(mq) \(path): \(reply.status ?? 0) \(reply.bodyString)")
                #expect(reply.bodyString.contains(reason) && reply.bodyString.contains("cannot be sent"), "\(mq) \(path): \(reply.bodyString)")
            }
            let query = try await bus.call(mq, "", headers: [("path", "/v1/items?q=../x&next=%2Fpage")])
            #expect(query.status == 200 && query.bodyString == "legacy GET /api/v1/items?q=../x&next=%2Fpage body= x-test=-",
                    "\(mq): \(query.status ?? 0) \(query.bodyString)")
        }
        await bus.broker.close()
        await legacy.stop()
        #expect(node.stop() == 0)
    }

    @Test("a kept connection the service closes after reading the request: a POST or a tcp record is answered 502 and never repeated; a GET is retried once on a fresh connection")
    func closedAfterTheRequestIsNotRepeated() async throws {
        let webLog = ServiceLog()
        let lineLog = ServiceLog()
        let web = try await MisbehavingService.httpClosingKeptConnections(log: webLog)
        let line = try await MisbehavingService.lineClosingKeptConnections(log: lineLog)
        let node = try startNode("""
            modules:
              - module: mq
              - module: proxy
                adapters:
                  - { name: web, kind: http, mq: Kept, target: "http://127.0.0.1:\(web.port)", workers: 1, timeout: 5s }
                  - { name: web-tasks, kind: http, mq: KeptTasks, target: "http://127.0.0.1:\(web.port)", workers: 2, max_in_flight: 1, timeout: 5s }
                  - { name: line, kind: tcp, mq: KeptLine, target: 127.0.0.1:\(line.port), framing: newline, workers: 1, timeout: 5s }
                  - { name: line-tasks, kind: tcp, mq: KeptLineTasks, target: 127.0.0.1:\(line.port), framing: newline, workers: 2, max_in_flight: 1, timeout: 5s }
            """)
        defer { node.cleanUp() }
        let bus = try BusCaller(port: node.port)
        for mq in ["Kept", "KeptTasks"] {
            // The first call opens the connection the next one finds kept.
            #expect(try await bus.call(mq, "\(mq)-warm", headers: [("path", "/warm")]).status == 200)
            let post = try await bus.call(mq, "\(mq)-order", headers: [("path", "/close-post")])
            #expect(post.status == 502, "\(mq): \(post.status ?? 0) \(post.bodyString)")
            #expect(post.bodyString.contains("closed the connection after the request was sent") && post.bodyString.contains("not repeated"),
                    "\(mq): \(post.bodyString)")
            #expect(webLog.seen["POST /close-post \(mq)-order"] == 1, "the service got the POST once: \(webLog.seen)")

            #expect(try await bus.call(mq, "", headers: [("path", "/warm-\(mq)")]).status == 200)
            let get = try await bus.call(mq, "", headers: [("path", "/close-get-\(mq)")])
            #expect(get.status == 200 && get.bodyString == "GET /close-get-\(mq) ", "\(mq): \(get.status ?? 0) \(get.bodyString)")
            #expect(webLog.seen["GET /close-get-\(mq) "] == 2, "a GET is repeated once on a fresh connection: \(webLog.seen)")
        }
        for mq in ["KeptLine", "KeptLineTasks"] {
            #expect(try await bus.call(mq, "\(mq)-warm").bodyString == "echo:\(mq)-warm")
            let record = try await bus.call(mq, "close-\(mq)")
            #expect(record.status == 502 && record.bodyString.contains("not repeated"), "\(mq): \(record.status ?? 0) \(record.bodyString)")
            #expect(lineLog.seen["close-\(mq)"] == 1, "the service got the record once: \(lineLog.seen)")
            #expect(try await bus.call(mq, "\(mq)-after").bodyString == "echo:\(mq)-after", "the next call connects afresh")
        }
        await bus.broker.close()
        await web.stop()
        await line.stop()
        #expect(node.stop() == 0)
    }

    @Test("a consume the node answers 429 (max_parked_consumes reached) is not a request: it never reaches the legacy service")
    func parkedConsumeLimitIsNotARequest() async throws {
        let web = try await CountingService.http()
        // Two workers on one MQ and room for one parked consume: the second worker's consume is answered 429.
        let node = try startNode("""
            modules:
              - module: mq
                max_parked_consumes: 1
              - module: proxy
                adapters:
                  - { name: web, kind: http, mq: Parked, target: "http://127.0.0.1:\(web.port)", workers: 2, timeout: 5s }
            """)
        defer { node.cleanUp() }
        // Either the refusal is logged (read as a refusal), or the service sees a request nobody sent (read as a
        // message, the defect).
        let settled = await eventually(within: 20) {
            node.stderr.contains("parked consume limit reached") || !web.requests.seen.isEmpty
        }
        #expect(settled, "\(node.stderr.suffix(2000))")
        #expect(web.requests.seen.isEmpty, "the service got requests nobody sent: \(web.requests.seen.count) distinct, \(web.requests.seen.values.reduce(0, +)) in all")
        await web.stop()
        #expect(node.stop() == 0)
    }

    @Test("http and tcp services that answer each request twice: the second answer never reaches the next caller")
    func serviceAnsweringTwice() async throws {
        let webLog = ServiceLog()
        let lineLog = ServiceLog()
        // The answers come after 300 ms, so that the second caller's request waits in the MQ meanwhile and is taken
        // the moment the first is answered.
        let web = try await MisbehavingService.httpAnsweringTwice(log: webLog, delay: .milliseconds(300))
        let line = try await MisbehavingService.lineAnsweringTwice(log: lineLog, delay: .milliseconds(300))
        let node = try startNode("""
            modules:
              - module: mq
              - module: proxy
                adapters:
                  - { name: web, kind: http, mq: TwiceWeb, target: "http://127.0.0.1:\(web.port)", workers: 1, timeout: 10s }
                  - { name: line, kind: tcp, mq: TwiceLine, target: 127.0.0.1:\(line.port), framing: newline, workers: 1, timeout: 10s }
            """)
        defer { node.cleanUp() }
        let bus = try BusCaller(port: node.port)
        _ = try await bus.call("TwiceWeb", "warm-up")
        _ = try await bus.call("TwiceLine", "warm-up")

        for (mq, expected) in [("TwiceWeb", "id="), ("TwiceLine", "echo:")] {
            let replies = try await withThrowingTaskGroup(of: (String, Message).self) { group in
                for caller in 0..<4 {
                    group.addTask { ("\(mq)-\(caller)", try await bus.call(mq, "\(mq)-\(caller)", timeout: .seconds(30))) }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            for (sent, got) in replies {
                #expect(got.status == 200 && got.bodyString == expected + sent, "\(sent) got \(got.status ?? 0) \(got.bodyString)")
            }
        }
        #expect(webLog.seen.values.allSatisfy { $0 == 1 }, "\(webLog.seen)")
        #expect(lineLog.seen.values.allSatisfy { $0 == 1 }, "\(lineLog.seen)")
        await bus.broker.close()
        await web.stop()
        await line.stop()
        #expect(node.stop() == 0)
    }

    @Test("an http service that sends more than its response's framing says (a body to a HEAD, bytes past the content-length): the next call on the connection still gets its own answer")
    func bytesPastTheResponse() async throws {
        let log = ServiceLog()
        let web = try await MisbehavingService.httpSayingTooMuch(log: log)
        let node = try startNode("""
            modules:
              - module: mq
              - module: proxy
                adapters:
                  - { name: loop, kind: http, mq: TooMuch, target: "http://127.0.0.1:\(web.port)", workers: 1, timeout: 10s }
                  - { name: tasks, kind: http, mq: TooMuchTasks, target: "http://127.0.0.1:\(web.port)", workers: 2, max_in_flight: 1, timeout: 10s }
            """)
        defer { node.cleanUp() }
        let bus = try BusCaller(port: node.port)
        for mq in ["TooMuch", "TooMuchTasks"] {
            #expect(try await bus.call(mq, "warm-up").bodyString == "answer=warm-up")
            let head = try await bus.call(mq, "", headers: [("http-method", "HEAD")])
            #expect(head.status == 200 && head.bodyString.isEmpty, "\(mq): HEAD got \(head.status ?? 0) \(head.bodyString)")
            // Sent on the same kept connection: the body sent with the HEAD's answer must not be read as its start.
            let afterHead = try await bus.call(mq, "after-head")
            #expect(afterHead.status == 200 && afterHead.bodyString == "answer=after-head",
                    "\(mq): \(afterHead.status ?? 0) \(afterHead.bodyString)")
            let overlong = try await bus.call(mq, "overlong")
            #expect(overlong.status == 200 && overlong.bodyString == "answer=overl", "\(mq): \(overlong.status ?? 0) \(overlong.bodyString)")
            let afterOverlong = try await bus.call(mq, "after-overlong")
            #expect(afterOverlong.status == 200 && afterOverlong.bodyString == "answer=after-overlong",
                    "\(mq): \(afterOverlong.status ?? 0) \(afterOverlong.bodyString)")
        }
        #expect(log.seen.values.allSatisfy { $0 == 2 }, "each request once per adapter: \(log.seen)")
        await bus.broker.close()
        await web.stop()
        #expect(node.stop() == 0)
    }

    @Test("an http service's response larger than the adapter's max_reply is refused with a 502 naming the limit, not buffered")
    func responseLargerThanTheLimit() async throws {
        let large = try await MisbehavingService.httpAnsweringLarge(bodyBytes: 3 << 20)
        let node = try startNode("""
            modules:
              - module: mq
              - module: proxy
                adapters:
                  - { name: big, kind: http, mq: Big, target: "http://127.0.0.1:\(large.port)", workers: 1, timeout: 10s, max_reply: 1MiB }
                  - { name: big-tasks, kind: http, mq: BigTasks, target: "http://127.0.0.1:\(large.port)", workers: 2, max_in_flight: 1, timeout: 10s, max_reply: 1MiB }
            """)
        defer { node.cleanUp() }
        let bus = try BusCaller(port: node.port)
        for mq in ["Big", "BigTasks"] {
            let reply = try await bus.call(mq, "x", timeout: .seconds(30))
            #expect(reply.status == 502, "\(mq): \(reply.status ?? 0)")
            #expect(reply.bodyString.contains("max_reply (1048576 bytes)"), "\(mq): \(reply.bodyString.prefix(300))")
        }
        await bus.broker.close()
        await large.stop()
        #expect(node.stop() == 0)
    }

    @Test("a worker answering a backlog of requests at once (400: a body the framing cannot carry) does not recurse once per request: the node survives 20 000")
    func backlogAnsweredSynchronously() async throws {
        let log = ServiceLog()
        // The service holds the first request 2 s: meanwhile the flood waits in the MQ, behind the one worker.
        let line = try await MisbehavingService.lineAnsweringTwice(log: log, delay: .seconds(2), twice: false)
        let node = try startNode("""
            modules:
              - module: mq
              - module: proxy
                adapters:
                  - { name: line, kind: tcp, mq: Backlog, target: 127.0.0.1:\(line.port), framing: newline, workers: 1, timeout: 20s }
            """)
        defer { node.cleanUp() }
        let bus = try BusCaller(port: node.port)
        _ = try await bus.call("Backlog", "warm-up")
        async let held = bus.call("Backlog", "held", timeout: .seconds(30))
        #expect(await eventually(within: 10) { log.seen["held"] == 1 })
        let count = 20_000
        let (channel, replies) = try await flood(port: node.port, mq: "Backlog", body: "two\nlines", count: count)
        #expect(try await held.bodyString == "echo:held")
        let answered = await eventually(within: 60) { replies.count.withLockedValue { $0 } == count || replies.closed.withLockedValue { $0 } }
        #expect(answered && replies.count.withLockedValue { $0 } == count, "\(replies.count.withLockedValue { $0 }) of \(count) answered; node stderr: \(node.stderr.suffix(1500))")
        try? await channel.close()
        await bus.broker.close()
        await line.stop()
        #expect(node.stop() == 0)
    }

    @Test("SIGTERM with a call in flight: the caller gets the service's answer, and the node exits 0")
    func gracefulShutdownWithACallInFlight() async throws {
        let log = ServiceLog()
        let line = try await MisbehavingService.lineAnsweringTwice(log: log, delay: .seconds(1), twice: false)
        let node = try startNode("""
            modules:
              - module: mq
              - module: proxy
                adapters:
                  - { name: line, kind: tcp, mq: Term, target: 127.0.0.1:\(line.port), framing: newline, workers: 2, timeout: 10s }
            """)
        defer { node.cleanUp() }
        let bus = try BusCaller(port: node.port)
        _ = try await bus.call("Term", "warm-up")
        async let answer = bus.call("Term", "in-flight", timeout: .seconds(20))
        #expect(await eventually(within: 10) { log.seen["in-flight"] == 1 })
        let exit = Task(executorPreference: BlockingExecutor.shared) { node.stop() }
        let reply = try await answer
        #expect(reply.status == 200 && reply.bodyString == "echo:in-flight", "\(reply.status ?? 0) \(reply.bodyString)")
        #expect(await exit.value == 0, "\(node.stderr.suffix(1500))")
        await bus.broker.close()
        await line.stop()
    }

    @Test("remove_mq while the workers consume: they create it again and serve the next call; HTTP/1.0, Connection: close and chunked answers each get a fresh connection")
    func removedQueueAndClosingServices() async throws {
        let web = try await CountingService.http()
        let old = try await LegacyServer.raw(Array("HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nold-style".utf8))
        let closing = try await LegacyServer.raw(Array("HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 7\r\n\r\nclosing".utf8))
        let chunked = try await LegacyServer.raw(Array(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Mixed-Case: Yes\r\n\r\n3;x=y\r\nchu\r\n4\r\nnked\r\n0\r\nX-Trailer: t\r\n\r\n".utf8))
        let node = try startNode("""
            modules:
              - module: mq
              - module: proxy
                adapters:
                  - { name: web, kind: http, mq: Removed, target: "http://127.0.0.1:\(web.port)", workers: 4, timeout: 5s }
                  - { name: old, kind: http, mq: Old, target: "http://127.0.0.1:\(old.port)", workers: 1, timeout: 5s }
                  - { name: closing, kind: http, mq: Closing, target: "http://127.0.0.1:\(closing.port)", workers: 1, timeout: 5s }
                  - { name: chunked, kind: http, mq: Chunked, target: "http://127.0.0.1:\(chunked.port)", workers: 1, timeout: 5s }
            """)
        defer { node.cleanUp() }
        let bus = try BusCaller(port: node.port)
        #expect(try await bus.call("Removed", "before").bodyString == "id=before")
        let admin = try node.connect()
        defer { admin.close() }
        #expect(admin.request([("cmd", "remove_mq"), ("mq_name", "Removed"), ("id", "rm")]))
        #expect(try admin.receive().status == 200)
        #expect(try await bus.call("Removed", "after").bodyString == "id=after")
        #expect(web.requests.seen == ["before": 1, "after": 1], "\(web.requests.seen)")
        for call in 0..<3 {
            let reply = try await bus.call("Old", "call-\(call)")
            #expect(reply.status == 200 && reply.bodyString == "old-style", "\(reply.status ?? 0) \(reply.bodyString)")
            let closed = try await bus.call("Closing", "call-\(call)")
            #expect(closed.status == 200 && closed.bodyString == "closing", "\(closed.status ?? 0) \(closed.bodyString)")
            let dechunked = try await bus.call("Chunked", "call-\(call)")
            #expect(dechunked.status == 200 && dechunked.bodyString == "chunked" && dechunked.headers["x-mixed-case"] == "Yes",
                    "\(dechunked.status ?? 0) \(dechunked.bodyString) \(dechunked.headers)")
        }
        await bus.broker.close()
        await web.stop()
        await old.stop()
        await closing.stop()
        await chunked.stop()
        #expect(node.stop() == 0)
    }

    @Test("http and tcp services that add stray bytes after each complete answer: every caller still gets its own answer, on a fresh connection")
    func strayBytesAfterTheResponse() async throws {
        let stray = try await LegacyServer.custom { channel in
            try channel.pipeline.syncOperations.addHandler(RecordServerHandler(extract: { buffer in
                // A whole request head (the adapter sends no body here).
                guard let end = buffer.readableBytesView.firstRange(of: Array("\r\n\r\n".utf8)) else { return nil }
                return buffer.readSlice(length: end.upperBound - buffer.readerIndex)
            }, respond: { _ in (ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloXYZ"), false) }))
        }
        let strayLines = try await LegacyServer.custom { channel in
            try channel.pipeline.syncOperations.addHandler(RecordServerHandler(
                extract: { TestFraming.extract("newline", recordSize: 0, from: &$0) },
                respond: { record in (ByteBuffer(string: "answer:\(String(buffer: record))\nXY"), false) }))
        }
        let node = try startNode("""
            modules:
              - module: mq
              - module: proxy
                adapters:
                  - { name: stray, kind: http, mq: Stray, target: "http://127.0.0.1:\(stray.port)", workers: 1, timeout: 5s }
                  - { name: stray-lines, kind: tcp, mq: StrayLines, target: "127.0.0.1:\(strayLines.port)", framing: newline, workers: 1, timeout: 5s }
            """)
        defer { node.cleanUp() }
        let bus = try BusCaller(port: node.port)
        for call in 0..<3 {
            let reply = try await bus.call("Stray", "call-\(call)")
            #expect(reply.status == 200 && reply.bodyString == "hello", "call \(call): \(reply.status ?? 0) \(reply.bodyString)")
            let line = try await bus.call("StrayLines", "call-\(call)")
            #expect(line.status == 200 && line.bodyString == "answer:call-\(call)", "call \(call): \(line.status ?? 0) \(line.bodyString)")
        }
        await bus.broker.close()
        await stray.stop()
        await strayLines.stop()
        #expect(node.stop() == 0)
    }

    @Test("an http service that sends stray bytes a moment after its answer: they close the idle connection, the next caller gets its own answer")
    func strayBytesWhileIdle() async throws {
        let log = ServiceLog()
        let late = try await LegacyServer.custom { channel in
            try channel.pipeline.syncOperations.addHandler(LateStrayHTTPHandler(log: log))
        }
        let node = try startNode("""
            modules:
              - module: mq
              - module: proxy
                adapters:
                  - { name: late, kind: http, mq: LateStray, target: "http://127.0.0.1:\(late.port)", workers: 1, timeout: 5s }
            """)
        defer { node.cleanUp() }
        let bus = try BusCaller(port: node.port)
        for call in 0..<3 {
            let reply = try await bus.call("LateStray", "call-\(call)")
            #expect(reply.status == 200 && reply.bodyString == "hello", "call \(call): \(reply.status ?? 0) \(reply.bodyString)")
            // The adapter read the stray bytes on its idle connection and closed it (the service sees the close).
            #expect(await eventually(within: 10) { log.seen["closed"] == call + 1 })
        }
        await bus.broker.close()
        await late.stop()
        #expect(node.stop() == 0)
    }

    @Test("a service answering after the timeout: the caller gets 504, and the late answer never reaches the next caller on the same worker")
    func lateAnswerAfterTheTimeout() async throws {
        let legacy = try await LegacyServer.http()  // `/slow` answers after 3 s
        let node = try startNode("""
            modules:
              - module: mq
              - module: proxy
                adapters:
                  - { name: late, kind: http, mq: Late, target: "http://127.0.0.1:\(legacy.port)", workers: 1, timeout: 1s }
            """)
        defer { node.cleanUp() }
        let bus = try BusCaller(port: node.port)
        #expect(try await bus.call("Late", "first").bodyString.contains("body=first"))
        let slow = try await bus.call("Late", "slow", headers: [("path", "/slow")])
        #expect(slow.status == 504, "\(slow.status ?? 0) \(slow.bodyString)")
        // Calls until well past the moment the late answer would have come (3 s after the slow request).
        let until = ContinuousClock.now + .seconds(3)
        var call = 0
        while ContinuousClock.now < until {
            let reply = try await bus.call("Late", "next-\(call)")
            #expect(reply.status == 200 && reply.bodyString.contains("body=next-\(call) "), "\(reply.status ?? 0) \(reply.bodyString)")
            call += 1
        }
        await bus.broker.close()
        await legacy.stop()
        #expect(node.stop() == 0)
    }
}

/// Answers each request head `200 hello`, then 20 ms later writes two stray bytes on the same connection; notes each
/// connection the adapter closes.
final class LateStrayHTTPHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private let log: ServiceLog
    private var buffer = ByteBuffer()

    init(log: ServiceLog) {
        self.log = log
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        buffer.writeBuffer(&bytes)
        while let end = buffer.readableBytesView.firstRange(of: Array("\r\n\r\n".utf8)) {
            buffer.moveReaderIndex(to: end.upperBound)
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")), promise: nil)
            let channel = context.channel
            context.eventLoop.scheduleTask(in: .milliseconds(20)) {
                channel.writeAndFlush(ByteBuffer(string: "XY"), promise: nil)
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        log.arrived("closed")
        context.fireChannelInactive()
    }
}
