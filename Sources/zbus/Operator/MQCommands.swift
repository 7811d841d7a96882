import ArgumentParser
import Foundation
import Zbus

/// `zbus mq`: the MQs of one node.
struct MQCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mq",
        abstract: "List, inspect, create and remove the MQs of a node.",
        discussion: ZbusCommand.operatorExitCodes,
        subcommands: [MQList.self, MQInfoCommand.self, MQCreate.self, MQRemove.self])
}

/// The `--timeout` of the commands that send one request at a time.
struct AnswerTimeoutOption: ParsableArguments {
    @Option(name: .long, help: "Seconds to wait for each answer of the server.")
    var timeout: Double = 10

    var duration: Duration { get throws { try Seconds.duration(timeout, option: "--timeout") } }

    mutating func validate() throws { _ = try duration }
}

struct MQList: OperatorCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List the node's MQs: mode, depth, consumers, in flight, last activity.",
        discussion: ZbusCommand.operatorExitCodes)

    @OptionGroup var serverOptions: ServerOptions
    @OptionGroup var timeoutOption: AnswerTimeoutOption

    var answerTimeout: Duration { get throws { try timeoutOption.duration } }

    /// The `--json` document.
    struct Listing: Encodable {
        var server: String
        var mqs: [MQReport]
    }

    func execute(on connection: OperatorConnection) async throws(OperatorError) {
        var request = Message()
        request.cmd = "data"
        let reply = try await connection.expectOK(request, name: "`data`")
        let data = try NodeJSON.decode(NodeData.self, from: reply, server: connection.server, request: "`data`")
        // `data` empties every consumer list (zbus 6 does too): `mq info` shows them.
        let reports = data.mqTable.values.map { mq -> MQReport in
            var report = MQReport(mq)
            report.consumerList = nil
            return report
        }.sorted { $0.name < $1.name }
        if serverOptions.json {
            Output.json(Listing(server: connection.server, mqs: reports))
            return
        }
        guard !reports.isEmpty else {
            Output.text("no MQ on \(connection.server)\n")
            return
        }
        // Rates only from a node that measures them (a zbus 6.3 node does not): no column of dashes.
        let showsRates = reports.contains { $0.produceRate != nil }
        var columns: [TextTable.Column] = [
            .init("NAME"), .init("MODE"), .init("DEPTH", numeric: true), .init("CONSUMERS", numeric: true),
            .init("IN FLIGHT", numeric: true),
        ]
        if showsRates { columns += [.init("PRODUCE/S", numeric: true), .init("CONSUME/S", numeric: true)] }
        var table = TextTable(columns + [.init("LAST ACTIVITY")])
        let now = Date()
        for mq in reports {
            var cells = [mq.name, mq.mode, Shown.count(mq.depth), mq.opened ? String(mq.consumers) : "-", Shown.count(mq.inFlight)]
            if showsRates { cells += [Shown.rate(mq.produceRate), Shown.rate(mq.consumeRate)] }
            table.append(cells + [Shown.age(mq.lastUpdateMillis, now: now)])
        }
        Output.text(table.render())
        if reports.contains(where: { !$0.opened }) {
            Output.text("(-: not opened since the node started; `zbus mq info NAME` opens it and shows its counts)\n")
        }
    }
}

/// Reads one MQ with `query_mq`.
enum MQQuery {
    static func fetch(_ name: String, on connection: OperatorConnection) async throws(OperatorError) -> MQReport {
        var request = Message()
        request.cmd = "query_mq"
        request.mq = name
        let requestName = "`query_mq` for MQ '\(name)'"
        let reply = try await connection.expectOK(request, name: requestName, mq: name)
        return MQReport(try NodeJSON.decode(NodeMQ.self, from: reply, server: connection.server, request: requestName))
    }

    /// The MQ as lines of `key  value` and its consumers as a table.
    static func render(_ mq: MQReport) -> String {
        var details = TextTable([.init("MQ"), .init(mq.name)])
        details.append(["mode", "\(mq.mode) (\(mq.modeBits))"])
        details.append(["depth", Shown.count(mq.depth)])
        details.append(["in flight", Shown.count(mq.inFlight)])
        details.append(["consumers", String(mq.consumers)])
        if mq.produceRate != nil || mq.produced != nil {
            details.append(["produce/s", Shown.rate(mq.produceRate)])
            details.append(["consume/s", Shown.rate(mq.consumeRate)])
            details.append(["produced", Shown.count(mq.produced)])
            details.append(["consumed", Shown.count(mq.consumed)])
        }
        details.append(["creator", mq.creator ?? "-"])
        details.append(["last activity", Shown.age(mq.lastUpdateMillis)])
        details.append(["max length", mq.maxLength.map { String($0) } ?? "unlimited"])
        if let master = mq.masterMq { details.append(["master", master]) }
        var text = details.render()
        let consumers = mq.consumerList ?? []
        if !consumers.isEmpty {
            var table = TextTable([.init("CONSUMER"), .init("STATUS"), .init("TOPICS")])
            for consumer in consumers {
                table.append([consumer.address, consumer.status ?? "-", consumer.topics.joined(separator: ",")])
            }
            text += "\n" + table.render()
        }
        return text
    }
}

struct MQInfoCommand: OperatorCommand {
    static let configuration = CommandConfiguration(
        commandName: "info", abstract: "Show one MQ: its counts and the consumers waiting on it.",
        discussion: ZbusCommand.operatorExitCodes)

    @OptionGroup var serverOptions: ServerOptions
    @OptionGroup var timeoutOption: AnswerTimeoutOption

    @Argument(help: "The MQ's name.")
    var name: String

    var answerTimeout: Duration { get throws { try timeoutOption.duration } }

    /// The `--json` document.
    struct Details: Encodable {
        var server: String
        var mq: MQReport
    }

    func execute(on connection: OperatorConnection) async throws(OperatorError) {
        let mq = try await MQQuery.fetch(name, on: connection)
        if serverOptions.json {
            Output.json(Details(server: connection.server, mq: mq))
        } else {
            Output.text(MQQuery.render(mq))
        }
    }
}

struct MQCreate: OperatorCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Create an MQ (an MQ that exists is left as it is, and said so).",
        discussion: ZbusCommand.operatorExitCodes)

    @OptionGroup var serverOptions: ServerOptions
    @OptionGroup var timeoutOption: AnswerTimeoutOption

    @Argument(help: "The MQ's name.")
    var name: String

    @Option(name: .long, help: "mq, pubsub, memory or rpc, combined with + (mq+memory), or the mode bits as a number.")
    var mode: String = "mq"

    @Option(name: .long, help: "A token producers and consumers of the new MQ must present.")
    var accessToken: String?

    @Option(name: .long, help: "At most this many messages waiting; produces beyond it are refused (429).")
    var maxLength: Int64?

    @Option(name: .long, help: "The node's register_token, if it requires one.")
    var token: String?

    var answerTimeout: Duration { get throws { try timeoutOption.duration } }

    /// The `--json` document.
    struct Creation: Encodable {
        var server: String
        var created: Bool
        var mq: MQReport
    }

    mutating func validate() throws {
        guard let bits = ModeNames.parse(mode), bits <= 15 else {
            throw ValidationError("--mode '\(mode)' is not a mode: use mq, pubsub, memory or rpc, combined with + (mq+memory), or a number 1-15")
        }
        if let maxLength, maxLength < 0 { throw ValidationError("--max-length must be 0 (unlimited) or more, got \(maxLength)") }
    }

    func execute(on connection: OperatorConnection) async throws(OperatorError) {
        let bits = ModeNames.parse(mode) ?? 1
        let existing: MQReport?
        do throws(OperatorError) {
            existing = try await MQQuery.fetch(name, on: connection)
        } catch .unknownMQ {
            existing = nil
        }
        var request = Message()
        request.cmd = "create_mq"
        request.headers[HeaderName.mqName] = name
        request.headers[HeaderName.mqMode] = String(bits)
        request.headers[HeaderName.accessToken] = accessToken
        request.headers["max_length"] = maxLength.map { String($0) }
        request.headers[HeaderName.registerToken] = token
        _ = try await connection.expectOK(request, name: "`create_mq` for MQ '\(name)'")
        let mq = try await MQQuery.fetch(name, on: connection)
        if serverOptions.json {
            Output.json(Creation(server: connection.server, created: existing == nil, mq: mq))
            return
        }
        if existing == nil {
            Output.text("created MQ '\(name)' (\(mq.mode)) on \(connection.server)\n")
        } else if mq.modeBits != bits {
            Output.text("MQ '\(name)' already exists on \(connection.server) as \(mq.mode), not \(ModeNames.describe(bits)): left unchanged\n")
        } else {
            Output.text("MQ '\(name)' already exists on \(connection.server) (\(mq.mode)): left unchanged\n")
        }
    }
}

struct MQRemove: OperatorCommand {
    static let configuration = CommandConfiguration(
        commandName: "remove", abstract: "Remove an MQ and every message in it.", discussion: ZbusCommand.operatorExitCodes)

    @OptionGroup var serverOptions: ServerOptions
    @OptionGroup var timeoutOption: AnswerTimeoutOption

    @Argument(help: "The MQ's name.")
    var name: String

    @Option(name: .long, help: "The node's register_token, if it requires one.")
    var token: String?

    @Flag(name: .long, help: "Succeed when there is no such MQ (for scripts that clean up).")
    var ifExists = false

    var answerTimeout: Duration { get throws { try timeoutOption.duration } }

    /// The `--json` document.
    struct Removal: Encodable {
        var server: String
        var mq: String
        var removed: Bool
    }

    func execute(on connection: OperatorConnection) async throws(OperatorError) {
        var request = Message()
        request.cmd = "remove_mq"
        request.headers[HeaderName.mqName] = name
        request.headers[HeaderName.registerToken] = token
        let removed: Bool
        do throws(OperatorError) {
            _ = try await connection.expectOK(request, name: "`remove_mq` for MQ '\(name)'", mq: name)
            removed = true
        } catch .unknownMQ(let server, let mq, let requestName) {
            guard ifExists else { throw .unknownMQ(server: server, mq: mq, request: requestName) }
            removed = false
        }
        if serverOptions.json {
            Output.json(Removal(server: connection.server, mq: name, removed: removed))
        } else if removed {
            Output.text("removed MQ '\(name)' from \(connection.server)\n")
        } else {
            Output.text("no MQ named '\(name)' on \(connection.server): nothing to remove\n")
        }
    }
}
