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

/// What a counting legacy service saw: how often each request body arrived, and how many requests it held unanswered
/// at once.
final class ServiceLog: Sendable {
    private let state = NIOLockedValueBox((seen: [String: Int](), open: 0, peakOpen: 0))

    /// Requests by body, with how often each arrived.
    var seen: [String: Int] { state.withLockedValue { $0.seen } }
    /// The most requests held unanswered at once.
    var peakOpen: Int { state.withLockedValue { $0.peakOpen } }
    /// Requests held unanswered now.
    var open: Int { state.withLockedValue { $0.open } }

    func arrived(_ body: String) {
        state.withLockedValue { $0.seen[body, default: 0] += 1 }
    }

    func held(_ delta: Int) {
        state.withLockedValue { state in
            state.open += delta
            state.peakOpen = max(state.peakOpen, state.open)
        }
    }
}

/// A legacy service of the load tests, in the test process on an OS-chosen port.
final class CountingService: Sendable {
    /// What it saw.
    let requests: ServiceLog
    private let channel: any Channel
    private let children: NIOLockedValueBox<[any Channel]>
    var port: Int { channel.localAddress!.port! }
    /// Connections accepted so far.
    var connections: Int { children.withLockedValue { $0.count } }

    private init(channel: any Channel, children: NIOLockedValueBox<[any Channel]>, requests: ServiceLog) {
        self.channel = channel
        self.children = children
        self.requests = requests
    }

    /// An HTTP/1.1 service answering `id=BODY`; a request for `/hold` is never answered (held until its connection
    /// closes), the shape of a stuck service.
    static func http() async throws -> CountingService {
        let log = ServiceLog()
        return try await bind(log: log) { channel in
            try channel.pipeline.syncOperations.configureHTTPServerPipeline()
            try channel.pipeline.syncOperations.addHandler(CountingHTTPHandler(log: log))
        }
    }

    /// A newline-framed TCP service answering each record `echo:RECORD`.
    static func line() async throws -> CountingService {
        let log = ServiceLog()
        return try await bind(log: log) { channel in
            try channel.pipeline.syncOperations.addHandler(RecordServerHandler(extract: { buffer in
                TestFraming.extract("newline", recordSize: 0, from: &buffer)
            }, respond: { record in
                let text = String(buffer: record)
                log.arrived(text)
                return (ByteBuffer(string: "echo:\(text)\n"), false)
            }))
        }
    }

    private static func bind(log: ServiceLog, _ initializer: @escaping @Sendable (any Channel) throws -> Void) async throws -> CountingService {
        let children = NIOLockedValueBox<[any Channel]>([])
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                children.withLockedValue { $0.append(channel) }
                return channel.eventLoop.makeCompletedFuture { try initializer(channel) }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return CountingService(channel: channel, children: children, requests: log)
    }

    func stop() async {
        try? await channel.close()
        for child in children.withLockedValue({ $0 }) { try? await child.close() }
    }
}

/// The counting HTTP service's behaviour.
final class CountingHTTPHandler: WholeRequestHTTPHandler, @unchecked Sendable {
    private let log: ServiceLog
    private var holding = 0

    init(log: ServiceLog) {
        self.log = log
    }

    override func request(_ head: HTTPRequestHead, body: ByteBuffer, context: ChannelHandlerContext) {
        let text = String(buffer: body)
        log.arrived(text)
        if head.uri == "/hold" {
            holding += 1
            log.held(1)
            return
        }
        respond(context, to: head, headers: [("content-type", "text/plain")], body: "id=\(text)")
    }

    override func channelInactive(context: ChannelHandlerContext) {
        log.held(-holding)
        holding = 0
        context.fireChannelInactive()
    }
}

/// One caller's view of a call: what came back and how long it took.
struct TimedReply: Sendable {
    var id = ""
    let status: Int
    let body: String
    let elapsed: Duration
}

@Suite("Proxy adapters under load", .serialized, .blockingIO(.heavy))
struct ProxyLoadTests {
    /// With `pipeline` above 1 the workers of a loop share connections carrying several requests each: the same
    /// must hold, over a few connections.
    @Test("64 concurrent callers through the http and the tcp adapter, one request per connection or pipelined: each gets its own answer, none lost, none duplicated",
          arguments: [1, 4])
    func concurrentCallers(pipeline: Int) async throws {
        let web = try await CountingService.http()
        let ledger = try await CountingService.line()
        let node = try startNode("""
            modules:
              - module: mq
              - module: proxy
                adapters:
                  - { name: web, kind: http, mq: LoadWeb, target: "http://127.0.0.1:\(web.port)", workers: 16, timeout: 20s, pipeline: \(pipeline) }
                  - { name: ledger, kind: tcp, mq: LoadLine, target: 127.0.0.1:\(ledger.port), framing: newline, workers: 16, timeout: 20s, pipeline: \(pipeline) }
            """)
        defer { node.cleanUp() }
        // Callers spread over four client connections pools, as separate applications would be.
        let brokers = try (0..<4).map { _ in try BusCaller(port: node.port) }
        let callers = 64
        let callsEach = 10
        let run = UUID().uuidString.prefix(8)

        // Both adapters at once, 64 callers each, one call in flight per caller; every body unique.
        let replies = try await withThrowingTaskGroup(of: [(mq: String, sent: String, got: Message)].self) { group in
            for mq in ["LoadWeb", "LoadLine"] {
                for caller in 0..<callers {
                    group.addTask {
                        let bus = brokers[caller % brokers.count]
                        var replies: [(mq: String, sent: String, got: Message)] = []
                        for call in 0..<callsEach {
                            let id = "\(run)-\(mq)-\(caller)-\(call)"
                            replies.append((mq, id, try await bus.call(mq, id, timeout: .seconds(30))))
                        }
                        return replies
                    }
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }

        #expect(replies.count == 2 * callers * callsEach)
        var wrong: [String] = []
        for reply in replies {
            let expected = reply.mq == "LoadWeb" ? "id=\(reply.sent)" : "echo:\(reply.sent)"
            if reply.got.status != 200 || reply.got.bodyString != expected {
                wrong.append("\(reply.sent) got \(reply.got.status ?? 0) \(reply.got.bodyString)")
            }
        }
        #expect(wrong.isEmpty, "\(wrong.count) callers got someone else's answer or an error: \(wrong.prefix(5))")
        #expect(Set(replies.map(\.got.bodyString)).count == replies.count, "an answer reached two callers")
        // The services saw each request exactly once: none lost on the way in, none sent twice.
        for (service, mq) in [(web, "LoadWeb"), (ledger, "LoadLine")] {
            let seen = service.requests.seen
            let expected = Set((0..<callers).flatMap { caller in (0..<callsEach).map { "\(run)-\(mq)-\(caller)-\($0)" } })
            #expect(Set(seen.keys) == expected, "\(mq): \(expected.subtracting(seen.keys).count) requests never reached the service")
            let duplicated = seen.filter { $0.value != 1 }
            #expect(duplicated.isEmpty, "\(mq): sent to the service more than once: \(duplicated.prefix(5))")
            if pipeline > 1 {
                // 16 workers sharing connections of depth 4 per event loop: a few connections, not one per worker.
                #expect(service.connections <= 6, "\(mq): \(service.connections) connections for 16 workers at depth 4")
            }
        }

        for broker in brokers { await broker.broker.close() }
        await web.stop()
        await ledger.stop()
        #expect(node.stop() == 0)
    }

    @Test("a stuck service: its callers get 504 once the adapter's timeout has passed, while another adapter's 640 calls all complete")
    func slowServiceBesideAFastOne() async throws {
        let stuck = try await CountingService.http()
        let ledger = try await CountingService.line()
        let node = try startNode("""
            modules:
              - module: mq
              - module: proxy
                adapters:
                  - { name: stuck-web, kind: http, mq: Stuck, target: "http://127.0.0.1:\(stuck.port)", workers: 4, timeout: 1s }
                  - { name: ledger, kind: tcp, mq: Ledger, target: 127.0.0.1:\(ledger.port), framing: newline, workers: 8, timeout: 20s }
            """)
        defer { node.cleanUp() }
        let slowBus = try BusCaller(port: node.port)
        let fastBus = try BusCaller(port: node.port)
        _ = try await fastBus.call("Ledger", "warm-up")

        // Four callers keep every worker of the stuck adapter busy: each calls again as soon as it is answered.
        let stop = NIOLockedValueBox(false)
        let slowCallers = Task {
            try await withThrowingTaskGroup(of: [TimedReply].self) { group in
                for caller in 0..<4 {
                    group.addTask {
                        var replies: [TimedReply] = []
                        var call = 0
                        while !stop.withLockedValue({ $0 }) || replies.isEmpty {
                            let start = ContinuousClock.now
                            let reply = try await slowBus.call("Stuck", "slow-\(caller)-\(call)", headers: [("path", "/hold")])
                            replies.append(TimedReply(status: reply.status ?? 0, body: reply.bodyString, elapsed: ContinuousClock.now - start))
                            call += 1
                        }
                        return replies
                    }
                }
                return try await group.reduce(into: []) { $0 += $1 }
            }
        }
        // Saturated: the service holds one request of each worker.
        #expect(await eventually(within: 20) { stuck.requests.open == 4 }, "the stuck service holds \(stuck.requests.open) requests")

        // Meanwhile the other adapter answers every call of its 16 callers.
        let fastReplies = try await withThrowingTaskGroup(of: [(String, Message)].self) { group in
            for caller in 0..<16 {
                group.addTask {
                    var replies: [(String, Message)] = []
                    for call in 0..<40 {
                        let id = "fast-\(caller)-\(call)"
                        replies.append((id, try await fastBus.call("Ledger", id, timeout: .seconds(30))))
                    }
                    return replies
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        stop.withLockedValue { $0 = true }
        let slowReplies = try await slowCallers.value

        #expect(fastReplies.count == 640)
        #expect(fastReplies.allSatisfy { $0.1.status == 200 && $0.1.bodyString == "echo:\($0.0)" })
        #expect(stuck.requests.peakOpen <= 4, "the stuck adapter had \(stuck.requests.peakOpen) calls open with 4 workers")
        #expect(!slowReplies.isEmpty)
        for reply in slowReplies {
            #expect(reply.status == 504, "\(reply.status) \(reply.body)")
            #expect(reply.body.contains("'stuck-web'") && reply.body.contains("did not answer within 1 s"), "\(reply.body)")
            // Not before the timeout; not much after it (a generous bound: the machine may be busy).
            #expect(reply.elapsed >= .seconds(1), "504 after \(reply.elapsed)")
            #expect(reply.elapsed < .seconds(6), "504 after \(reply.elapsed)")
        }

        await slowBus.broker.close()
        await fastBus.broker.close()
        await stuck.stop()
        await ledger.stop()
        #expect(node.stop() == 0)
    }

    @Test("back-pressure: with max_in_flight calls stuck, the requests beyond them get 503 naming the limit within the timeout, not a growing queue")
    func backPressure() async throws {
        let stuck = try await CountingService.http()
        let node = try startNode("""
            modules:
              - module: mq
              - module: proxy
                adapters:
                  - { name: narrow, kind: http, mq: Narrow, target: "http://127.0.0.1:\(stuck.port)", workers: 16, max_in_flight: 2, timeout: 1s }
            """)
        defer { node.cleanUp() }
        let bus = try BusCaller(port: node.port)
        #expect(try await bus.call("Narrow", "warm-up").bodyString == "id=warm-up")

        let replies = try await withThrowingTaskGroup(of: TimedReply.self) { group in
            for caller in 0..<16 {
                group.addTask {
                    let start = ContinuousClock.now
                    let reply = try await bus.call("Narrow", "held-\(caller)", headers: [("path", "/hold")])
                    return TimedReply(id: "held-\(caller)", status: reply.status ?? 0, body: reply.bodyString, elapsed: ContinuousClock.now - start)
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }

        #expect(replies.count == 16)
        let refused = replies.filter { $0.status == 503 }
        let timedOut = replies.filter { $0.status == 504 }
        #expect(refused.count + timedOut.count == 16, "\(replies.map(\.status))")
        // The two calls that held the slots timed out, and at most the two that took their slots; the requests
        // waiting behind them were refused once they had waited `timeout` for a slot.
        #expect((2...4).contains(timedOut.count), "\(replies.map(\.status))")
        #expect(refused.count >= 12, "\(replies.map(\.status))")
        for reply in refused {
            #expect(reply.body.contains("'narrow'") && reply.body.contains("max_in_flight (2) calls stayed busy for 1 s"), "\(reply.body)")
        }
        // Every caller heard within twice the timeout (plus a generous margin for a busy machine), not after all the
        // calls queued ahead of it: without the bound, the last of 16 callers behind 2 stuck slots waits 8 timeouts.
        for reply in replies {
            #expect(reply.elapsed >= .seconds(1), "\(reply.status) after \(reply.elapsed)")
            #expect(reply.elapsed < .seconds(6), "\(reply.status) after \(reply.elapsed)")
        }
        // The limit held at the service, and a refused request never reached it.
        #expect(stuck.requests.peakOpen <= 2, "\(stuck.requests.peakOpen) calls open with max_in_flight 2")
        let seen = stuck.requests.seen
        #expect(refused.allSatisfy { seen[$0.id] == nil }, "a refused request reached the service")
        #expect(timedOut.allSatisfy { seen[$0.id] == 1 })

        // The adapter serves again at once when the service answers.
        #expect(try await bus.call("Narrow", "after").bodyString == "id=after")

        await bus.broker.close()
        await stuck.stop()
        #expect(node.stop() == 0)
    }

    /// The two ways an adapter runs its workers: on the node's loops (`max_in_flight` at least `workers`), and the
    /// task-based runner (`max_in_flight` below `workers`, calls waiting for a slot).
    static let queueTimeoutShapes = [
        "workers: 1",
        "workers: 2, max_in_flight: 1",
    ]

    @Test("queue_timeout: behind a stuck service, a request that waited for a worker past it is answered 504 unsent, so every caller hears within queue_timeout + timeout",
          arguments: queueTimeoutShapes)
    func queueTimeout(shape: String) async throws {
        let stuck = try await CountingService.http()
        let node = try startNode("""
            modules:
              - module: mq
              - module: monitor
              - module: proxy
                adapters:
                  - { name: stuck-web, kind: http, mq: Queued, target: "http://127.0.0.1:\(stuck.port)", \(shape), timeout: 1s }
            """)
        defer { node.cleanUp() }
        let bus = try BusCaller(port: node.port)
        #expect(try await bus.call("Queued", "warm-up").bodyString == "id=warm-up")

        // Eight callers at once for a service that answers none: a worker or two take the first requests, the rest
        // wait in the MQ.
        let callers = 8
        let replies = try await withThrowingTaskGroup(of: TimedReply.self) { group in
            for caller in 0..<callers {
                group.addTask {
                    let start = ContinuousClock.now
                    let reply = try await bus.call("Queued", "queued-\(caller)", headers: [("path", "/hold")], timeout: .seconds(30))
                    return TimedReply(id: "queued-\(caller)", status: reply.status ?? 0, body: reply.bodyString, elapsed: ContinuousClock.now - start)
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }

        #expect(replies.count == callers)
        let expired = replies.filter { $0.body.contains("for a free worker, past the adapter's queue_timeout (1 s), and was not sent") }
        let sent = replies.filter { $0.body.contains("did not answer within 1 s") }
        let refused = replies.filter { $0.body.contains("is saturated") }
        #expect(expired.allSatisfy { $0.status == 504 } && sent.allSatisfy { $0.status == 504 } && refused.allSatisfy { $0.status == 503 })
        #expect(expired.count + sent.count + refused.count == callers, "\(replies.map(\.body))")
        // Requests are taken as the first calls end, one timeout in: those behind have waited past queue_timeout by
        // then, or (with a slot to wait for) have what is left of it to get one. A slot is held a whole timeout by
        // each request sent, so at most two are. Without the limit each of the eight waited its turn, the last one
        // eight timeouts, and all of them reached the service.
        #expect(sent.count <= 2 && expired.count + refused.count >= 6, "\(replies.map(\.body))")
        if !shape.contains("max_in_flight") {
            // No slots: every request not sent was answered for its wait in the MQ.
            #expect(refused.isEmpty && expired.count >= 6, "\(replies.map(\.body))")
        }
        for reply in replies {
            // Within queue_timeout + timeout (plus a generous margin for a busy machine).
            #expect(reply.elapsed < .milliseconds(3500), "\(reply.status) after \(reply.elapsed): \(reply.body)")
        }
        // Only the requests that were sent reached the service.
        #expect(await eventually(within: 10) { stuck.requests.seen.count == 1 + sent.count },
                "the service saw \(stuck.requests.seen.keys.sorted()), \(sent.count) were sent")
        #expect(expired.allSatisfy { stuck.requests.seen[$0.id] == nil }, "a request answered unsent reached the service")
        // Operators see them apart from the calls that failed.
        let metrics = try runCommand("/usr/bin/env", ["curl", "-s", "-m", "10", "http://127.0.0.1:\(node.port)/metrics"]).stdout
        #expect(metrics.contains("zbus_proxy_calls_total{adapter=\"stuck-web\",outcome=\"expired\"} \(expired.count)\n"),
                "\(metrics.split(separator: "\n").filter { $0.contains("zbus_proxy_calls_total") })")

        // The adapter serves again at once when the service answers.
        #expect(try await bus.call("Queued", "after").bodyString == "id=after")

        await bus.broker.close()
        await stuck.stop()
        #expect(node.stop() == 0)
    }
}

@Suite("Proxy adapters under access control", .serialized, .blockingIO(.heavy))
struct ProxyAccessControlTests {
    @Test("under an auth section, adapters on the node's own MQ serve a caller with the produce permission; one without gets 403 and never reaches the service")
    func adaptersUnderAuth() async throws {
        let web = try await CountingService.http()
        let ledger = try await CountingService.line()
        // The adapters' workers are in-process sessions (the node's own code): they consume with no token of the
        // `auth` section. Two workers each, below max_in_flight, and one adapter with max_in_flight below its
        // workers, so that both the workers on the node's loops and the task-based runner are covered.
        let node = try startNode("""
            auth:
              tokens:
                - { name: caller, secret: caller-secret, produce: ["Web*", "Ledger"] }
                - { name: stranger, secret: stranger-secret, consume: ["Other"] }
            modules:
              - module: mq
              - module: proxy
                adapters:
                  - { name: web, kind: http, mq: WebAuth, target: "http://127.0.0.1:\(web.port)", workers: 2, timeout: 5s }
                  - { name: ledger, kind: tcp, mq: Ledger, target: 127.0.0.1:\(ledger.port), framing: newline, workers: 4, max_in_flight: 2, timeout: 5s }
            """)
        defer { node.cleanUp() }

        for (mq, answer) in [("WebAuth", "id=good-web"), ("Ledger", "echo:good-ledger")] {
            let body = mq == "WebAuth" ? "good-web" : "good-ledger"
            // The adapters create their MQs as they start consuming: retried until they have (404 before).
            var reply = (status: 0, body: "")
            let deadline = ContinuousClock.now + .seconds(20)
            repeat {
                reply = try curl(port: node.port, mq: mq, body: body, headers: ["token: caller-secret"])
                if reply.status == 200 { break }
                try await Task.sleep(for: .milliseconds(50))
            } while ContinuousClock.now < deadline
            #expect(reply.status == 200 && reply.body == answer, "\(mq): \(reply)")

            let refused = try curl(port: node.port, mq: mq, body: "stranger-\(mq)", headers: ["token: stranger-secret"])
            #expect(refused.status == 403 && refused.body.contains("produce permission"), "\(mq): \(refused)")
            let anonymous = try curl(port: node.port, mq: mq, body: "anonymous-\(mq)")
            #expect(anonymous.status == 403, "\(mq): \(anonymous)")
        }
        #expect(Set(web.requests.seen.keys) == ["good-web"], "\(web.requests.seen)")
        #expect(Set(ledger.requests.seen.keys) == ["good-ledger"], "\(ledger.requests.seen)")
        // A refused consume is not a request: nothing was sent to the services on the workers' behalf.
        #expect(!node.stderr.contains("legacy call failed"), "\(node.stderr.suffix(2000))")

        await web.stop()
        await ledger.stop()
        #expect(node.stop() == 0)
    }
}
