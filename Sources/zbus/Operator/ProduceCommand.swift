import ArgumentParser
import Foundation
import NIOCore
import Zbus

struct ProduceCommand: OperatorCommand {
    static let configuration = CommandConfiguration(
        commandName: "produce",
        abstract: "Send a message to an MQ: the body from the command line, a file, or stdin.",
        discussion: ZbusCommand.operatorExitCodes)

    @OptionGroup var serverOptions: ServerOptions
    @OptionGroup var timeoutOption: AnswerTimeoutOption

    @Argument(help: "The MQ.")
    var mq: String

    @Argument(help: "The message body. Without it (and without --file) the body is read from stdin.")
    var body: String?

    @Option(name: .long, help: "Read the body from this file.")
    var file: String?

    @Flag(inversion: .prefixedNo, help: "Wait until the node has stored each message (--no-ack only writes them: faster, and a lost connection loses them unseen).")
    var ack = true

    @Option(name: .long, help: "Send the message this many times.")
    var count = 1

    @Option(name: .long, help: "The message's topic (for a pubsub MQ).")
    var topic: String?

    @Option(name: .long, help: "An extra header NAME=VALUE; repeat for more.")
    var header: [String] = []

    @Option(name: .long, help: "The MQ's access token, if it has one.")
    var token: String?

    var answerTimeout: Duration { get throws { try timeoutOption.duration } }

    /// Headers the command itself sets; `--header` may not change them.
    private static let reserved: Set<String> = [
        HeaderName.cmd, HeaderName.mq, HeaderName.ack, HeaderName.token, HeaderName.id, HeaderName.rawId, HeaderName.sender,
    ]

    /// How many produces are on the wire at once: a window, so that `--count 1000000` holds a bounded number of
    /// pending replies.
    private static let window = 256

    /// The `--json` document.
    struct Production: Encodable {
        var server: String
        var mq: String
        var produced: Int
        var acknowledged: Bool
        var ids: [String]
    }

    mutating func validate() throws {
        if body != nil && file != nil { throw ValidationError("give the body as an argument or with --file, not both") }
        guard (1...1_000_000).contains(count) else { throw ValidationError("--count must be 1 to 1000000, got \(count)") }
        _ = try parsedHeaders()
    }

    private func parsedHeaders() throws(ValidationError) -> [(String, String)] {
        var headers: [(String, String)] = []
        for item in header {
            guard let equals = item.firstIndex(of: "="), equals != item.startIndex else {
                throw ValidationError("--header '\(item)' is not NAME=VALUE")
            }
            let name = item[..<equals].lowercased()
            guard !Self.reserved.contains(name) else {
                throw ValidationError("--header \(name) is set by the command (use --token, --topic; the MQ is the first argument)")
            }
            headers.append((name, String(item[item.index(after: equals)...])))
        }
        return headers
    }

    func execute(on connection: OperatorConnection) async throws(OperatorError) {
        let bytes = try readBody()
        var template = Message(method: "POST", uri: "/", headers: Headers((try? parsedHeaders()) ?? []), body: ByteBuffer(bytes: bytes))
        template.topic = topic
        let producer = Producer(broker: connection.broker, mq: mq, token: token ?? OperatorConnection.authToken)
        let client = connection.broker.pooledClient()
        // Only what is printed is kept: every id for --json, the one id of a single message otherwise.
        let keepsIds = serverOptions.json || count == 1
        var ids: [String] = []
        if keepsIds { ids.reserveCapacity(count) }
        var sent = 0
        while sent < count {
            let batch = (sent..<min(count, sent + Self.window)).map { _ -> Message in
                var message = template
                message.id = client.makeId()
                return message
            }
            if ack {
                let results = await producer.sendBatch(batch, timeout: connection.timeout)
                for (offset, result) in results.enumerated() {
                    if case .failure(let error) = result {
                        throw .from(error, server: connection.server, request: describe(message: sent + offset + 1, acknowledged: sent + offset))
                    }
                }
            } else {
                for (offset, message) in batch.enumerated() {
                    do {
                        try await producer.sendWithoutAck(message)
                    } catch {
                        throw .from(error, server: connection.server, request: describe(message: sent + offset + 1, acknowledged: nil))
                    }
                }
            }
            if keepsIds { ids.append(contentsOf: batch.compactMap(\.id)) }
            sent += batch.count
        }
        if serverOptions.json {
            Output.json(Production(server: connection.server, mq: mq, produced: sent, acknowledged: ack, ids: ids))
            return
        }
        let what = sent == 1 ? "1 message (\(bytes.count) bytes, id \(ids[0]))" : "\(sent) messages of \(bytes.count) bytes"
        Output.text("produced \(what) to MQ '\(mq)' on \(connection.server)\(ack ? ", stored" : ", written without acknowledgement")\n")
    }

    /// How an error names the failed produce: which message, and how many were stored before it.
    private func describe(message: Int, acknowledged: Int?) -> String {
        var text = "`produce` to MQ '\(mq)'"
        if count > 1 {
            text += " (message \(message) of \(count)"
            if let acknowledged { text += "; \(acknowledged) stored before it" }
            text += ")"
        }
        return text
    }

    /// The body: the argument, the file, or stdin, at most the client's body limit.
    private func readBody() throws(OperatorError) -> [UInt8] {
        if let body { return Array(body.utf8) }
        let limit = ClientConfiguration().limits.maxBodyBytes
        let handle: FileHandle
        let name: String
        if let file {
            name = file
            guard let opened = FileHandle(forReadingAtPath: file) else {
                let reason = FileManager.default.fileExists(atPath: file) ? "permission denied" : "no such file"
                throw .unreadableInput(path: file, reason: reason)
            }
            handle = opened
        } else {
            name = "stdin"
            handle = FileHandle.standardInput
        }
        defer { if file != nil { try? handle.close() } }
        var bytes: [UInt8] = []
        while true {
            let chunk: Data?
            do {
                chunk = try handle.read(upToCount: 1 << 20)
            } catch {
                throw .unreadableInput(path: name, reason: "\(error)")
            }
            guard let chunk, !chunk.isEmpty else { break }
            bytes.append(contentsOf: chunk)
            if bytes.count > limit {
                throw .unreadableInput(path: name, reason: "it is larger than \(limit) bytes, the most one message may carry")
            }
        }
        return bytes
    }
}
