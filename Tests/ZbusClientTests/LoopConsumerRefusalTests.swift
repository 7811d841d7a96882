import Foundation
import Logging
import Testing
import Zbus
import ZbusTestSupport

/// A loop consumer the node keeps refusing (a wrong MQ token) retries every `retryDelay` without flooding the log,
/// and says so when consuming works again.
@Suite("Loop consumer: refusals in the log", .blockingIO)
struct LoopConsumerRefusalTests {
    @Test("a refused loop consumer logs the first refusal at error with the reason, the next ones at debug, and consuming again at notice")
    func refusalStreak() async throws {
        let (embedded, directory) = try await startEmbeddedNode()
        defer { try? FileManager.default.removeItem(at: directory) }
        let raw = try WireClient(port: embedded.address!.port)
        defer { raw.close() }
        raw.request([("cmd", "create_mq"), ("mq_name", "Guarded"), ("mq_mode", "1"), ("access_token", "right-token")])
        #expect(try raw.receive().status == 200)

        let logs = CapturedLogs()
        let options = LoopConsumer.Options(token: "wrong-token", autoCreate: .mq, createWithToken: true,
                                           pollTimeout: .milliseconds(50), retryDelay: .milliseconds(10))
        let consumer = try LoopConsumer(node: embedded.node, mq: "Guarded", options: options, logger: logs.logger())
        consumer.start { request in consumer.finish(Message(status: 200, text: "ok"), routing: request) }

        // A bounded number of retries: at least 20 refusals, one of them logged at error.
        #expect(await eventually(within: 20) { logs.lines(containing: "refuses to let this consumer consume").count >= 20 })
        let refusals = logs.lines(containing: "refuses to let this consumer consume")
        #expect(refusals.first?.level == .error)
        #expect(refusals.first?.metadata["reason"]?.hasPrefix("403") == true, "the reason is logged: \(refusals.first?.metadata ?? [:])")
        #expect(refusals.filter { $0.level > .debug }.count == 1, "one line above debug per streak: \(refusals.map(\.level))")
        #expect(refusals.dropFirst().allSatisfy { $0.metadata["repeated"] != nil })

        // The MQ removed, the consumer creates it again with its own token and consumes: one notice line says so.
        raw.request([("cmd", "remove_mq"), ("mq_name", "Guarded"), ("token", "right-token")])
        #expect(try raw.receive().status == 200)
        #expect(await eventually(within: 20) { !logs.lines(containing: "consuming again").isEmpty })
        let recovered = logs.lines(containing: "consuming again")
        #expect(recovered.count == 1)
        #expect(recovered.first?.level == .notice)
        #expect(recovered.first?.metadata["last_reason"]?.hasPrefix("403") == true)
        let errors = logs.all.filter { $0.level >= .error }
        #expect(errors.count == 1, "\(errors.map(\.message))")

        try await consumer.stop().get()
        await embedded.stop()
    }

    @Test("a repeated failure is logged at its level again once per reminder interval, and a new reason starts a new streak")
    func reminders() {
        let logs = CapturedLogs()
        let logger = logs.logger()
        var failures = RepeatedFailureLog(reminderInterval: .seconds(60))
        let start = ContinuousClock.now
        var levels: [Logger.Level] = []
        for second in [0, 1, 59, 60, 61] {
            levels.append(failures.failed("refused", reason: "403 a", logger: logger, now: start + .seconds(second)))
        }
        #expect(levels == [.error, .debug, .debug, .error, .debug])
        #expect(logs.all[3].metadata["repeated"] == "3", "the reminder says how often it repeated")
        let other = failures.failed("refused", reason: "404 b", level: .warning, logger: logger, now: start + .seconds(62))
        #expect(other == .warning, "another reason starts a new streak")
        let ended = failures.succeeded("working", logger: logger)
        #expect(ended)
        #expect(logs.all.last?.level == .notice)
        #expect(logs.all.last?.metadata["after"] == "1 failures")
        let again = failures.succeeded("working", logger: logger)
        #expect(!again, "nothing to say without failures")
        let fresh = failures.failed("refused", reason: "403 a", logger: logger, now: start + .seconds(63))
        #expect(fresh == .error, "a streak after a success starts at the failure's level")
        #expect(logs.all.count == 8)
    }

    @Test("failed calls from many threads: per kind, one line a minute at its level with how many were held back since, the rest at debug with their details")
    func callFailures() async {
        let logs = CapturedLogs()
        let logger = logs.logger()
        let failures = CallFailureLog(reminderInterval: .seconds(60))
        let start = ContinuousClock.now
        await withTaskGroup(of: Void.self) { group in
            for worker in 0..<8 {
                group.addTask {
                    for call in 0..<100 {
                        failures.failed("legacy call failed", kind: "service down", metadata: ["id": "\(worker)-\(call)"],
                                        logger: logger, now: start + .seconds(1))
                    }
                }
            }
        }
        #expect(logs.problems.count == 1, "one warning for 800 failures of one kind")
        #expect(logs.all.count == 800, "each failure still logged at debug, with its id")
        #expect(Set(logs.all.compactMap { $0.metadata["id"] }).count == 800)
        #expect(failures.failed("legacy call timed out", kind: "timed out", logger: logger, now: start + .seconds(2)) == .warning,
                "another kind has its own first warning")
        #expect(failures.failed("legacy call failed", kind: "service down", logger: logger, now: start + .seconds(59)) == .debug)
        #expect(failures.failed("legacy call failed", kind: "service down", logger: logger, now: start + .seconds(61)) == .warning)
        #expect(logs.problems.last?.metadata["repeated"] == "800", "the reminder counts what was held back since the last warning")
        #expect(failures.failed("legacy call failed", kind: "service down", logger: logger, now: start + .seconds(200)) == .warning,
                "the first failure after a quiet minute is a warning again")
        #expect(logs.problems.last?.metadata["repeated"] == nil)
    }
}
