import ArgumentParser
import Foundation
import NIOConcurrencyHelpers
import Zbus

/// One entry of a tracker's table (``TrackerEntry``, the wire form's six fields) as `cluster --json` prints it.
struct EntryReport: Encodable {
    let entry: TrackerEntry

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(entry.id, forKey: .mq)
        try container.encode(entry.server, forKey: .server)
        try container.encode(ModeNames.describe(entry.mode), forKey: .mode)
        try container.encode(entry.mode, forKey: .modeBits)
        try container.encode(entry.unconsumedCount, forKey: .depth)
        try container.encode(entry.consumerCount, forKey: .consumers)
        try container.encode(entry.lastUpdateTime, forKey: .lastUpdateMillis)
    }

    private enum CodingKeys: String, CodingKey {
        case mq, server, mode, depth, consumers
        case modeBits = "mode_bits"
        case lastUpdateMillis = "last_update_ms"
    }
}

/// What a tracker knows: the servers that joined it and the entries they reported.
struct ClusterView: Encodable {
    /// One server and how many entries it has.
    struct Server: Encodable {
        var address: String
        var entries: Int
    }

    var tracker: String
    var servers: [Server]
    var entries: [TrackerEntry]
    /// Lines of `pub_all` that are not entries (a newer tracker's format, or damage), counted rather than dropped
    /// silently.
    var unreadableLines: Int

    /// The view from the `server_join` messages that came before the `pub_all` answer, and that answer's body.
    init(tracker: String, joined: [String], table: String) {
        self.tracker = tracker
        var entries: [TrackerEntry] = []
        var unreadable = 0
        // Line by line rather than `TrackerEntry.parseLines`: one damaged line should not hide the others.
        for line in table.split(separator: "\n") where !line.allSatisfy(\.isWhitespace) {
            if let entry = try? TrackerEntry(parsing: line) { entries.append(entry) } else { unreadable += 1 }
        }
        self.entries = entries.sorted { ($0.id, $0.server) < ($1.id, $1.server) }
        self.unreadableLines = unreadable
        // A server may have entries without its join having reached the tracker yet, or joined with no entries.
        var counts: [String: Int] = [:]
        for address in joined { counts[address, default: 0] += 0 }
        for entry in entries { counts[entry.server, default: 0] += 1 }
        self.servers = counts.map { Server(address: $0.key, entries: $0.value) }.sorted { $0.address < $1.address }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(tracker, forKey: .tracker)
        try container.encode(servers, forKey: .servers)
        try container.encode(entries.map(EntryReport.init), forKey: .entries)
        try container.encode(unreadableLines, forKey: .unreadableLines)
    }

    private enum CodingKeys: String, CodingKey {
        case tracker, servers, entries
        case unreadableLines = "unreadable_lines"
    }

    /// The servers and the entries as two tables.
    func render(now: Date = Date()) -> String {
        var text = "tracker \(tracker): \(servers.count) server\(servers.count == 1 ? "" : "s"), "
            + "\(entries.count) entr\(entries.count == 1 ? "y" : "ies")\n"
        if !servers.isEmpty {
            var table = TextTable([.init("SERVER"), .init("ENTRIES", numeric: true)])
            for server in servers { table.append([server.address, String(server.entries)]) }
            text += "\n" + table.render()
        }
        if !entries.isEmpty {
            var table = TextTable([
                .init("MQ"), .init("SERVER"), .init("MODE"), .init("DEPTH", numeric: true), .init("CONSUMERS", numeric: true),
                .init("LAST ACTIVITY"),
            ])
            for entry in entries {
                table.append([
                    entry.id, entry.server, ModeNames.describe(entry.mode), String(entry.unconsumedCount), String(entry.consumerCount),
                    Shown.age(entry.lastUpdateTime, now: now),
                ])
            }
            text += "\n" + table.render()
        }
        if unreadableLines > 0 {
            text += "\n(\(unreadableLines) line\(unreadableLines == 1 ? "" : "s") of the tracker's table could not be read)\n"
        }
        return text
    }
}

struct ClusterCommand: OperatorCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster",
        abstract: "Show a tracker's view of the cluster: its servers and which MQs each hosts.",
        discussion: """
            Subscribes to the tracker (`sub_all`), reads its answer (one `server_join` per server, then `pub_all` with \
            every entry) and leaves. --server names the tracker.

            """ + ZbusCommand.operatorExitCodes)

    @OptionGroup var serverOptions: ServerOptions
    @OptionGroup var timeoutOption: AnswerTimeoutOption

    var answerTimeout: Duration { get throws { try timeoutOption.duration } }

    func execute(on connection: OperatorConnection) async throws(OperatorError) {
        // The joins come as messages without an id before the answer, on the same connection, and so reach `onPush`
        // before the answer completes the request.
        let joined = NIOLockedValueBox<[String]>([])
        let client = connection.broker.makeClient { push in
            guard push.cmd == TrackerCommand.serverJoin, let server = push.headers[HeaderName.server] else { return }
            joined.withLockedValue { $0.append(server) }
        }
        var request = Message()
        request.cmd = TrackerCommand.subAll
        if let token = OperatorConnection.authToken { request.token = token }
        let reply: Message
        do {
            reply = try await client.send(request, timeout: connection.timeout)
        } catch {
            await client.close()
            throw .from(error, server: connection.server, request: "`sub_all`")
        }
        await client.close()
        // Read into locals once: Swift 6.3.1's optimizer crashed (an ownership check) on the reply's properties read
        // inside the guard and its closure in a release build.
        let status = reply.status
        let command = reply.cmd
        let body = reply.bodyString
        guard command == TrackerCommand.pubAll, status == nil || status == 200 else {
            let answer = status.map { "\($0) \(body)" } ?? "`\(command ?? "a message without cmd")`"
            throw .notATracker(server: connection.server, answer: answer)
        }
        let view = ClusterView(tracker: connection.server, joined: joined.withLockedValue { $0 }, table: body)
        if serverOptions.json {
            Output.json(view)
        } else {
            Output.text(view.render())
        }
    }
}
