import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import Testing
import ZbusClient
import ZbusTestSupport

/// Adapters with `pipeline: N`: the loop workers of a loop share connections carrying several requests each. What
/// must hold: every caller gets its own answer, nothing is sent twice that may not be, a slow answer or a closing
/// service never hands a caller someone else's answer. (64 concurrent callers, pipelined or not: ProxyLoadTests.)
@Suite("Proxy adapters pipelining", .serialized, .blockingIO(.heavy))
struct ProxyPipelineTests {
    @Test("a request the service never answers, pipelined with others: it gets 504 at the timeout; the others get their own answer or a 502, never another's; then calls flow again")
    func stuckRequestInThePipeline() async throws {
        let web = try await CountingService.http()
        let node = try startNode("""
            modules:
              - module: mq
              - module: proxy
                adapters:
                  - { name: web, kind: http, mq: PipeStuck, target: "http://127.0.0.1:\(web.port)", workers: 8, timeout: 1s, pipeline: 8 }
            """)
        defer { node.cleanUp() }
        let bus = try BusCaller(port: node.port)
        _ = try await bus.call("PipeStuck", "warm-up")
        let replies = try await withThrowingTaskGroup(of: (String, Message).self) { group in
            group.addTask { ("held", try await bus.call("PipeStuck", "held", headers: [("path", "/hold")], timeout: .seconds(10))) }
            for caller in 0..<7 {
                group.addTask { ("c\(caller)", try await bus.call("PipeStuck", "c\(caller)", timeout: .seconds(10))) }
            }
            return try await group.reduce(into: [String: Message]()) { $0[$1.0] = $1.1 }
        }
        #expect(replies["held"]?.status == 504, "\(replies["held"]?.status ?? 0) \(replies["held"]?.bodyString ?? "")")
        for (sent, reply) in replies where sent != "held" {
            let own = reply.status == 200 && reply.bodyString == "id=\(sent)"
            let abandoned = reply.status == 502 && reply.bodyString.contains("is not repeated")
            #expect(own || abandoned, "\(sent): \(reply.status ?? 0) \(reply.bodyString)")
        }
        #expect(web.requests.seen.values.allSatisfy { $0 == 1 }, "a request was sent twice: \(web.requests.seen)")
        for call in 0..<20 {
            let reply = try await bus.call("PipeStuck", "after-\(call)")
            #expect(reply.status == 200 && reply.bodyString == "id=after-\(call)", "\(reply.status ?? 0) \(reply.bodyString)")
        }
        await bus.broker.close()
        await web.stop()
        #expect(node.stop() == 0)
    }

    @Test("a service that closes the connection after every third answer: pipelined POSTs behind the close are never sent twice and never get another's answer")
    func serviceClosingMidPipeline() async throws {
        let log = ServiceLog()
        let closing = try await LegacyServer.custom { channel in
            try channel.pipeline.syncOperations.configureHTTPServerPipeline()
            try channel.pipeline.syncOperations.addHandler(MisbehavingHTTPHandler(log: log, mode: .answerThenCloseEvery(3)))
        }
        let node = try startNode("""
            modules:
              - module: mq
              - module: proxy
                adapters:
                  - { name: closing, kind: http, mq: PipeClose, target: "http://127.0.0.1:\(closing.port)", workers: 8, timeout: 5s, pipeline: 8 }
            """)
        defer { node.cleanUp() }
        let bus = try BusCaller(port: node.port)
        let replies = try await withThrowingTaskGroup(of: [(String, Message)].self) { group in
            for caller in 0..<8 {
                group.addTask {
                    var replies: [(String, Message)] = []
                    for call in 0..<10 {
                        let id = "p\(caller)-\(call)"
                        replies.append((id, try await bus.call("PipeClose", id, timeout: .seconds(10))))
                    }
                    return replies
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        var answered = 0
        for (sent, reply) in replies {
            if reply.status == 200 {
                #expect(reply.bodyString == "id=\(sent)", "\(sent) got \(reply.bodyString)")
                answered += 1
            } else {
                #expect(reply.status == 502, "\(sent): \(reply.status ?? 0) \(reply.bodyString)")
            }
        }
        #expect(answered >= 20, "only \(answered) of 80 answered")
        #expect(log.seen.values.allSatisfy { $0 == 1 }, "a POST was sent twice: \(log.seen.filter { $0.value > 1 })")
        await bus.broker.close()
        await closing.stop()
        #expect(node.stop() == 0)
    }

    @Test("a kept connection the service closes as it is reused: a GET is tried once more on a fresh connection, a POST is not")
    func idleConnectionClosedOnReuse() async throws {
        let log = ServiceLog()
        let closing = try await LegacyServer.custom { channel in
            try channel.pipeline.syncOperations.configureHTTPServerPipeline()
            try channel.pipeline.syncOperations.addHandler(MisbehavingHTTPHandler(log: log, mode: .closeUnansweredOnSecond))
        }
        let node = try startNode("""
            modules:
              - module: mq
              - module: proxy
                adapters:
                  - { name: reuse, kind: http, mq: PipeReuse, target: "http://127.0.0.1:\(closing.port)", workers: 1, timeout: 5s, pipeline: 4 }
            """)
        defer { node.cleanUp() }
        let bus = try BusCaller(port: node.port)
        #expect(try await bus.call("PipeReuse", "first").bodyString == "id=first")
        // The second request on that connection: the service reads it and closes without answering.
        let get = try await bus.call("PipeReuse", "", headers: [("http-method", "GET"), ("path", "/again")])
        #expect(get.status == 200, "\(get.status ?? 0) \(get.bodyString)")
        #expect(log.seen["GET /again"] == 2, "\(log.seen)")
        let post = try await bus.call("PipeReuse", "once")
        #expect(post.status == 502, "\(post.status ?? 0) \(post.bodyString)")
        #expect(log.seen["once"] == 1, "\(log.seen)")
        await bus.broker.close()
        await closing.stop()
        #expect(node.stop() == 0)
    }
}

/// An HTTP service that misbehaves with its connections: answers `id=BODY` (logging each request by body, or by
/// `METHOD URI` when it has none), and either closes after every n-th answer it gives on a connection (saying
/// `connection: close`), or reads the second request on a connection and closes without answering it.
final class MisbehavingHTTPHandler: WholeRequestHTTPHandler, @unchecked Sendable {
    enum Mode {
        case answerThenCloseEvery(Int)
        case closeUnansweredOnSecond
    }

    private let log: ServiceLog
    private let mode: Mode
    private var requests = 0

    init(log: ServiceLog, mode: Mode) {
        self.log = log
        self.mode = mode
    }

    override func request(_ head: HTTPRequestHead, body: ByteBuffer, context: ChannelHandlerContext) {
        requests += 1
        let text = String(buffer: body)
        log.arrived(text.isEmpty ? "\(head.method.rawValue) \(head.uri)" : text)
        switch mode {
        case .closeUnansweredOnSecond where requests == 2:
            context.close(promise: nil)
        case .answerThenCloseEvery(let n):
            respond(context, to: head, body: "id=\(text)", close: requests % n == 0)
        default:
            respond(context, to: head, body: "id=\(text)")
        }
    }
}
