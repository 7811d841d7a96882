import ArgumentParser
import Foundation
import NIOCore
import Zbus

struct ConsumeCommand: OperatorCommand {
    static let configuration = CommandConfiguration(
        commandName: "consume",
        abstract: "Take messages from an MQ and print them (each one is acknowledged: it leaves the MQ).",
        discussion: ZbusCommand.operatorExitCodes)

    @OptionGroup var serverOptions: ServerOptions

    @Argument(help: "The MQ.")
    var mq: String

    @Option(name: .long, help: "How many messages to take.")
    var count = 1

    @Option(name: .long, help: "Seconds to wait, in all, for the messages; fewer than --count by then exits 3.")
    var timeout: Double = 10

    @Option(name: .long, help: "For a pubsub MQ: the topics to subscribe to (a,b or *).")
    var topic: String?

    @Option(name: .long, help: "The MQ's access token, if it has one.")
    var token: String?

    var answerTimeout: Duration { get throws { try Seconds.duration(timeout, option: "--timeout") } }

    /// One message as `--json` prints it, one line per message.
    struct Delivery: Encodable {
        var mq: String
        var id: String?
        var status: Int?
        var headers: [String: String]
        var size: Int
        /// The body as text when it is UTF-8; otherwise `null`, and ``bodyBase64`` has it.
        var body: String?
        var bodyBase64: String?

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(mq, forKey: .mq)
            try container.encode(id, forKey: .id)
            try container.encode(status, forKey: .status)
            try container.encode(headers, forKey: .headers)
            try container.encode(size, forKey: .size)
            try container.encode(body, forKey: .body)
            try container.encode(bodyBase64, forKey: .bodyBase64)
        }

        private enum CodingKeys: String, CodingKey {
            case mq, id, status, headers, size, body
            case bodyBase64 = "body_base64"
        }
    }

    mutating func validate() throws {
        guard (1...1_000_000).contains(count) else { throw ValidationError("--count must be 1 to 1000000, got \(count)") }
        _ = try answerTimeout
    }

    func execute(on connection: OperatorConnection) async throws(OperatorError) {
        let total = (try? answerTimeout) ?? .seconds(10)
        let consumer = Consumer(
            broker: connection.broker, mq: mq, options: .init(token: token ?? OperatorConnection.authToken, topic: topic, autoCreate: nil, pollTimeout: total),
            logger: OperatorLog.logger)
        let deadline = ContinuousClock.now + total
        var taken = 0
        do throws(OperatorError) {
            while taken < count {
                let remaining = deadline - ContinuousClock.now
                guard remaining > .zero else { break }
                let message: Message?
                do {
                    message = try await consumer.take(timeout: remaining)
                } catch {
                    throw OperatorError.from(error, server: connection.server, request: "`consume` from MQ '\(mq)'")
                }
                guard let message else { break }
                taken += 1
                show(message, number: taken)
            }
        } catch {
            await consumer.close()
            throw error
        }
        // Closing acknowledges the last message, so that it is not delivered again.
        await consumer.close()
        if taken < count {
            throw .incomplete(server: connection.server, mq: mq, wanted: count, got: taken, within: total)
        }
    }

    private func show(_ message: Message, number: Int) {
        let bytes = message.body.map { Array($0.readableBytesView) } ?? []
        let text = String(bytes: bytes, encoding: .utf8)
        if serverOptions.json {
            var headers: [String: String] = [:]
            for (name, value) in message.headers { headers[name] = value }
            Output.jsonLine(Delivery(
                mq: mq, id: message.id, status: message.status, headers: headers, size: bytes.count, body: text,
                bodyBase64: text == nil ? Data(bytes).base64EncodedString() : nil))
            return
        }
        var line = "--- message \(number): id \(message.id ?? "-"), \(bytes.count) bytes"
        if let topic = message.topic { line += ", topic \(topic)" }
        var output = line + "\n"
        if let text {
            output += text.hasSuffix("\n") || text.isEmpty ? text : text + "\n"
        } else {
            output += "(\(bytes.count) bytes that are not UTF-8 text; --json shows them as base64)\n"
        }
        Output.text(output)
    }
}
