import ArgumentParser
import Foundation
import NIOConcurrencyHelpers
import Zbus

/// One entry of a tracker's table: which server hosts which MQ, as `entry_update` and `pub_all` carry it
/// (`entryId \t serverAddr \t mode \t lastUpdateTime \t unconsumedMsgCount \t consumerCount`).
struct TrackerEntry: Encodable, Equatable {
    var mq: String
    var server: String
    var modeBits: Int
    var lastUpdateMillis: Int64
    var depth: Int64
    var consumers: Int

    /// Reads one line; `nil` when it has fewer than six tab-separated fields or a count is not a number. Fields after
    /// the sixth are ignored, so that a tracker may add some.
    init?(line: Substring) {
        let fields = line.split(separator: "\t", omittingEmptySubsequences: false)
        guard fields.count >= 6, !fields[0].isEmpty, !fields[1].isEmpty,
            let mode = Int(fields[2].trimmingCharacters(in: .whitespaces)),
            let updated = Int64(fields[3].trimmingCharacters(in: .whitespaces)),
            let depth = Int64(fields[4].trimmingCharacters(in: .whitespaces)),
            let consumers = Int(fields[5].trimmingCharacters(in: .whitespacesAndNewlines))
        else { return nil }
        self.mq = String(fields[0])
        self.server = String(fields[1])
        self.modeBits = mode
        self.lastUpdateMillis = updated
        self.depth = depth
        self.consumers = consumers
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(mq, forKey: .mq)
        try container.encode(server, forKey: .server)
        try container.encode(ModeNames.describe(modeBits), forKey: .mode)
        try container.encode(modeBits, forKey: .modeBits)
        try container.encode(depth, forKey: .depth)
        try container.encode(consumers, forKey: .consumers)
        try container.encode(lastUpdateMillis, forKey: .lastUpdateMillis)
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
        for line in table.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" }) where !line.allSatisfy(\.isWhitespace) {
            if let entry = TrackerEntry(line: line) { entries.append(entry) } else { unreadable += 1 }
        }
        self.entries = entries.sorted { ($0.mq, $0.server) < ($1.mq, $1.server) }
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
        try container.encode(entries, forKey: .entries)
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
                    entry.mq, entry.server, ModeNames.describe(entry.modeBits), String(entry.depth), String(entry.consumers),
                    Shown.age(entry.lastUpdateMillis, now: now),
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
            guard push.cmd == "server_join", let server = push.headers[HeaderName.server] else { return }
            joined.withLockedValue { $0.append(server) }
        }
        var request = Message()
        request.cmd = "sub_all"
        let reply: Message
        do {
            reply = try await client.send(request, timeout: connection.timeout)
        } catch {
            await client.close()
            throw .from(error, server: connection.server, request: "`sub_all`")
        }
        await client.close()
        guard reply.cmd == "pub_all", reply.status == nil || reply.status == 200 else {
            let answer = reply.status.map { "\($0) \(reply.bodyString)" } ?? "`\(reply.cmd ?? "a message without cmd")`"
            throw .notATracker(server: connection.server, answer: answer)
        }
        let view = ClusterView(tracker: connection.server, joined: joined.withLockedValue { $0 }, table: reply.bodyString)
        if serverOptions.json {
            Output.json(view)
        } else {
            Output.text(view.render())
        }
    }
}
