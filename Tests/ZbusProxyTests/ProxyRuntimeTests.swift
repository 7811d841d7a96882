import Foundation
import NIOConcurrencyHelpers
import NIOCore
import Logging
import Testing
import Zbus
import ZbusClient
import ZbusTestSupport
@testable import ZbusProxyModule

/// An adapter that records how many calls run at once.
final class CountingAdapter: ProxyAdapter {
    let state = NIOLockedValueBox((running: 0, peak: 0))
    let delay: Duration

    init(delay: Duration) {
        self.delay = delay
    }

    func call(_ request: Message) async throws -> Message {
        state.withLockedValue { $0.running += 1; $0.peak = max($0.peak, $0.running) }
        defer { state.withLockedValue { $0.running -= 1 } }
        try await Task.sleep(for: delay)
        var reply = Message(status: 200)
        reply.setBody("done \(request.bodyString)")
        return reply
    }

    func shutdown() async {}
}

/// An adapter that fails with its own error.
struct FailingAdapter: ProxyAdapter {
    struct Broken: Error, CustomStringConvertible {
        var description: String { "the mainframe is on fire" }
    }

    func call(_ request: Message) async throws -> Message { throw Broken() }
    func shutdown() async {}
}

@Suite("Proxy runtime")
struct ProxyRuntimeTests {
    /// A runner that is never started (its broker is never contacted): only ``ProxyAdapterRunner/answer(_:)`` is used.
    private func runner(_ yaml: String, adapter: any ProxyAdapter) throws -> (ProxyAdapterRunner, any Broker) {
        let config = try NodeConfig.parse(yaml: "modules:\n  - module: x\n    entry: \(yaml)\n", file: "t.yaml")
        let entry = try ConfigSection(config.modules[0].value, allowedKeys: ["module", "entry"]).section("entry", allowedKeys: ProxyAdapterSettings.keys)!
        let broker = try ZbusBroker.connect(refusingAddress())
        return (ProxyAdapterRunner(settings: try ProxyAdapterSettings(entry), adapter: adapter, broker: broker, logger: Logger(label: "test")), broker)
    }

    @Test("max_in_flight bounds the legacy calls running at once; every caller is answered")
    func boundedInFlight() async throws {
        let adapter = CountingAdapter(delay: .milliseconds(30))
        let (runner, broker) = try runner("{ kind: x, mq: Q, workers: 8, max_in_flight: 2 }", adapter: adapter)
        let replies = await withTaskGroup(of: String.self) { group in
            for index in 0..<8 {
                group.addTask {
                    var request = Message()
                    request.setBody("\(index)")
                    return await runner.answer(request).bodyString
                }
            }
            return await group.reduce(into: Set<String>()) { $0.insert($1) }
        }
        #expect(replies == Set((0..<8).map { "done \($0)" }))
        #expect(adapter.state.withLockedValue { $0.peak } == 2)
        await broker.close()
    }

    @Test("a call past the timeout is answered 504 naming the adapter; an adapter's own error becomes a 502 with its description")
    func timeoutAndFailure() async throws {
        let (slow, broker) = try runner("{ name: glacier, kind: x, mq: Q, timeout: 100ms }", adapter: CountingAdapter(delay: .seconds(30)))
        let timedOut = await slow.answer(Message())
        #expect(timedOut.status == 504)
        #expect(timedOut.bodyString.contains("'glacier'") && timedOut.bodyString.contains("within 100 ms"), "\(timedOut.bodyString)")
        let (failing, broker2) = try runner("{ name: fire, kind: x, mq: Q }", adapter: FailingAdapter())
        let failed = await failing.answer(Message())
        #expect(failed.status == 502)
        #expect(failed.bodyString == "legacy service 'fire' failed: the mainframe is on fire")
        await broker.close()
        await broker2.close()
    }

    @Test("a service that fails every call under load logs one warning per kind of failure, not one per call; each call is still answered and logged at debug")
    func failuresDoNotFloodTheLog() async throws {
        let config = try NodeConfig.parse(yaml: "modules:\n  - module: x\n    entry: { name: fire, kind: x, mq: Q }\n", file: "t.yaml")
        let entry = try ConfigSection(config.modules[0].value, allowedKeys: ["module", "entry"]).section("entry", allowedKeys: ProxyAdapterSettings.keys)!
        let broker = try ZbusBroker.connect(refusingAddress())
        let logs = CapturedLogs()
        let runner = ProxyAdapterRunner(settings: try ProxyAdapterSettings(entry), adapter: FailingAdapter(), broker: broker,
                                        logger: logs.logger(label: "zbus.proxy"))
        let statuses = await withTaskGroup(of: Int.self) { group in
            for _ in 0..<64 { group.addTask { await runner.answer(Message()).status ?? 0 } }
            return await group.reduce(into: [Int]()) { $0.append($1) }
        }
        #expect(statuses == Array(repeating: 502, count: 64))
        let failed = logs.lines(containing: "legacy call failed")
        #expect(failed.count == 64)
        #expect(failed.filter { $0.level >= .warning }.count == 1, "\(failed.map(\.level))")
        #expect(failed.first { $0.level >= .warning }?.metadata["error"] == "the mainframe is on fire")
        await broker.close()
    }

    @Test("max_in_flight with a deadline: a caller that finds every slot busy until its deadline is refused without running; one with time to spare gets the slot when it frees")
    func limiterDeadline() async throws {
        let limiter = InFlightLimiter(limit: 1)
        let (held, release) = AsyncStream<Void>.makeStream()
        let (entered, enteredSignal) = AsyncStream<Void>.makeStream()
        let holder = Task {
            try await limiter.withSlot(deadline: .now + .seconds(600)) {
                enteredSignal.yield()
                for await _ in held {}
                return 1
            }
        }
        for await _ in entered { break }  // the holder has the only slot

        let ran = NIOLockedValueBox(false)
        await #expect(throws: InFlightLimiter.Saturated.self) {
            try await limiter.withSlot(deadline: .now + .milliseconds(50)) { ran.withLockedValue { $0 = true } }
        }
        #expect(!ran.withLockedValue { $0 })

        let waiter = Task { try await limiter.withSlot(deadline: .now + .seconds(600)) { 2 } }
        release.finish()
        #expect(try await holder.value == 1)
        #expect(try await waiter.value == 2)
        #expect(try await limiter.withSlot(deadline: .now + .milliseconds(1)) { 3 } == 3)  // free again: no wait at all
    }

    @Test("an adapter whose MQ token is wrong logs the refusal once at error with the reason, and its retries at debug", .blockingIO)
    func refusedConsumeLogsOnce() async throws {
        let directory = ZbusProcess.makeTemporaryDirectory("zbus-proxy-refused")
        defer { try? FileManager.default.removeItem(at: directory) }
        let node = try await ZbusNode(store: directory.appendingPathComponent("store").path, logLevel: .warning).start()
        let port = try #require(node.address?.port)
        let raw = try WireClient(port: port)
        defer { raw.close() }
        raw.request([("cmd", "create_mq"), ("mq_name", "Guarded"), ("mq_mode", "1"), ("access_token", "right-token")])
        #expect(try raw.receive().status == 200)

        let config = try NodeConfig.parse(yaml: "modules:\n  - module: x\n    entry: { name: guarded, kind: x, mq: Guarded, token: wrong-token }\n", file: "t.yaml")
        let entry = try ConfigSection(config.modules[0].value, allowedKeys: ["module", "entry"]).section("entry", allowedKeys: ProxyAdapterSettings.keys)!
        let broker = try ZbusBroker.connect("127.0.0.1:\(port)")
        let logs = CapturedLogs()
        let runner = ProxyAdapterRunner(settings: try ProxyAdapterSettings(entry), adapter: CountingAdapter(delay: .zero), broker: broker,
                                        logger: logs.logger(label: "zbus.proxy"))
        let running = Task { await runner.run() }
        // The retry pause is 1 s: three refusals take about two seconds.
        #expect(await eventually(within: 20) { logs.lines(containing: "cannot consume").count >= 3 })
        let refusals = logs.lines(containing: "cannot consume")
        #expect(refusals.first?.level == .error)
        #expect(refusals.first?.metadata["reason"]?.contains("403") == true, "\(refusals.first?.metadata ?? [:])")
        #expect(refusals.filter { $0.level > .debug }.count == 1, "\(refusals.map(\.level))")

        #expect(logs.all.filter { $0.level >= .error }.count == 1)

        running.cancel()
        await running.value
        await broker.close()
        await node.stop()
    }

    @Test("pipeline on an adapter that runs from tasks (here: a remote broker) is ignored with a warning that says why")
    func pipelineIgnoredWarns() async throws {
        let directory = ZbusProcess.makeTemporaryDirectory("zbus-proxy-pipeline-ignored")
        defer { try? FileManager.default.removeItem(at: directory) }
        let node = try await ZbusNode(store: directory.appendingPathComponent("store").path, logLevel: .warning).start()
        let port = try #require(node.address?.port)
        let yaml = "modules:\n  - module: x\n    entry: { kind: http, mq: Piped, target: \"http://127.0.0.1:1\", pipeline: 8 }\n"
        let config = try NodeConfig.parse(yaml: yaml, file: "t.yaml")
        let entry = try ConfigSection(config.modules[0].value, allowedKeys: ["module", "entry"])
            .section("entry", allowedKeys: ProxyAdapterSettings.keys + HttpAdapterFactory().configKeys)!
        let broker = try ZbusBroker.connect("127.0.0.1:\(port)")
        let logs = CapturedLogs()
        let runner = ProxyAdapterRunner(settings: try ProxyAdapterSettings(entry), adapter: try HttpAdapterFactory().makeAdapter(config: entry),
                                        broker: broker, logger: logs.logger(label: "zbus.proxy"))
        let running = Task { await runner.run() }
        #expect(await eventually(within: 20) { !logs.lines(containing: "pipeline is ignored").isEmpty })
        #expect(logs.lines(containing: "pipeline is ignored").first?.metadata["pipeline"] == "8")
        running.cancel()
        await running.value
        await broker.close()
        await node.stop()
    }

    @Test("queue_timeout: defaults to timeout; a request that waited past it since the MQ accepted it is answered 504 unsent; one that waited less is called")
    func queueTimeoutFromAcceptance() async throws {
        let adapter = CountingAdapter(delay: .zero)
        let (runner, broker) = try runner("{ name: slowpoke, kind: x, mq: Q, timeout: 5s, queue_timeout: 1s }", adapter: adapter)
        #expect(runner.settings.queueTimeout == .seconds(1))
        let (defaulted, other) = try self.runner("{ kind: x, mq: Q, timeout: 3s }", adapter: adapter)
        #expect(defaulted.settings.queueTimeout == .seconds(3))

        var stale = Message()
        stale.setBody("stale")
        stale.acceptedAt = NIODeadline.now() - TimeAmount.milliseconds(1500)
        let refused = await runner.answer(stale)
        #expect(refused.status == 504)
        #expect(refused.bodyString.hasPrefix("request for legacy service 'slowpoke' waited 15"), "\(refused.bodyString)")
        #expect(refused.bodyString.contains("in MQ 'Q' for a free worker, past the adapter's queue_timeout (1 s), and was not sent"))
        #expect(adapter.state.withLockedValue { $0.peak } == 0, "the adapter was called for a request that waited too long")

        var fresh = Message()
        fresh.setBody("fresh")
        fresh.acceptedAt = NIODeadline.now() - TimeAmount.milliseconds(200)
        #expect(await runner.answer(fresh).bodyString == "done fresh")
        // Read off a connection (no acceptance time): the wait counts from now.
        var unstamped = Message()
        unstamped.setBody("unstamped")
        #expect(await runner.answer(unstamped).bodyString == "done unstamped")

        let config = try NodeConfig.parse(yaml: "modules:\n  - module: x\n    entry: { kind: x, mq: Q, queue_timeout: 0ms }\n", file: "t.yaml")
        let entry = try ConfigSection(config.modules[0].value, allowedKeys: ["module", "entry"]).section("entry", allowedKeys: ProxyAdapterSettings.keys)!
        #expect(throws: ConfigError.self) { try ProxyAdapterSettings(entry) }
        await broker.close()
        await other.close()
    }

    @Test("the saturation reply: 503 naming the adapter, its address and the max_in_flight limit")
    func saturatedReply() {
        let reply = ProxyError.saturated(service: "narrow", address: "http://127.0.0.1:9", limit: 2, after: .seconds(1)).reply
        #expect(reply.status == 503)
        #expect(reply.bodyString.hasPrefix("legacy service 'narrow' at http://127.0.0.1:9 is saturated: its max_in_flight (2) calls stayed busy for 1 s, so this request was not sent"))
    }
}
