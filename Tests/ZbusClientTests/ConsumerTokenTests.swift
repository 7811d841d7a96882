import Foundation
import Testing
import Zbus
import ZbusTestSupport

/// A `Consumer` with a token that creates its missing MQ: the MQ is created protected by that token, and the
/// `create_mq` presents it, so the consumer can then consume (a 6.3 node refuses a consume carrying a token to an open
/// MQ, and a node under `auth` refuses an anonymous `create_mq`).
@Suite("Client: a consumer with a token creates its MQ with it", .blockingIO)
struct ConsumerTokenTests {
    @Test("without auth: the MQ is created with the consumer's token as its access token, so its consumes are accepted and strangers are refused")
    func accessToken() async throws {
        let node = try startProcessNode()
        defer { node.cleanUp() }
        let broker = try SingleBroker(address: "127.0.0.1:\(node.port)", configuration: quickConfiguration())
        let consumer = Consumer(broker: broker, mq: "Guarded", options: .init(token: "guard-7"))
        #expect(try await consumer.take(timeout: .milliseconds(100)) == nil, "created, then nothing within the wait")
        try await Producer(broker: broker, mq: "Guarded", token: "guard-7").send("for the guard")
        #expect(try await consumer.take(timeout: .seconds(5))?.bodyString == "for the guard")
        await consumer.close()

        let stranger = Consumer(broker: broker, mq: "Guarded", options: .init(autoCreate: nil))
        await #expect {
            _ = try await stranger.take(timeout: .milliseconds(100))
        } throws: { error in
            guard case .rejected(let cmd, _, let status, _) = error as? ZbusClientError else { return false }
            return cmd == "consume" && status == 403
        }
        await stranger.close()
        await broker.close()
        #expect(node.stop() == 0)
    }

    @Test("under auth: a consumer whose token has admin on the name creates the MQ and consumes; one with consume only is told create_mq needs admin")
    func authToken() async throws {
        let directory = ZbusProcess.makeTemporaryDirectory("zbus-consumer-auth")
        let file = directory.appendingPathComponent("node.yaml")
        try """
            node:
              log_level: warning
            auth:
              tokens:
                - { name: jobs-owner, secret: owner-SECRET-5521, admin: ["jobs.*"] }
                - { name: jobs-reader, secret: reader-SECRET-8812, consume: ["jobs.*"] }
            modules:
              - module: mq
            """.write(to: file, atomically: true, encoding: .utf8)
        let node = try ZbusProcess(arguments: ["--config", file.path], directory: directory)
        defer { node.cleanUp() }
        let broker = try SingleBroker(address: "127.0.0.1:\(node.port)", configuration: quickConfiguration())

        let owner = Consumer(broker: broker, mq: "jobs.eu", options: .init(token: "owner-SECRET-5521"))
        #expect(try await owner.take(timeout: .milliseconds(100)) == nil, "created, then nothing within the wait")
        try await Producer(broker: broker, mq: "jobs.eu", token: "owner-SECRET-5521").send("job 1")
        #expect(try await owner.take(timeout: .seconds(5))?.bodyString == "job 1")
        await owner.close()

        let reader = Consumer(broker: broker, mq: "jobs.us", options: .init(token: "reader-SECRET-8812"))
        await #expect {
            _ = try await reader.take(timeout: .milliseconds(100))
        } throws: { error in
            guard case .rejected(let cmd, _, let status, let body) = error as? ZbusClientError else { return false }
            return cmd == "create_mq" && status == 403 && body.contains("token 'jobs-reader'")
        }
        await reader.close()
        await broker.close()
        #expect(!node.stderr.contains("SECRET"))
        #expect(node.stop() == 0)
    }
}
