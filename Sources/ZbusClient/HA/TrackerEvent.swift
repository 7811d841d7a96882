/// One MQ (or direct-RPC service) on one broker, as trackers report it: the line
/// `entryId \t serverAddr \t mode \t lastUpdateTime \t unconsumedMsgCount \t consumerCount` of `entry_update` and
/// `pub_all` bodies (zbus 6.3 `ServerEntry`).
public struct ServerEntry: Sendable, Hashable, CustomStringConvertible {
    /// The MQ's name (or the entry id a direct-RPC service registered).
    public var entryId: String
    /// The broker hosting it (`host:port`, as the broker advertises itself).
    public var server: String
    /// The MQ's mode bits (8 for a direct-RPC service entry).
    public var mode: Int
    /// When the MQ last changed, in epoch milliseconds (the broker's clock).
    public var lastUpdateTime: Int64
    /// Messages waiting for a consumer on that broker.
    public var unconsumedMsgCount: Int64
    /// Consumers connected to that broker for this MQ.
    public var consumerCount: Int

    /// Creates an entry.
    public init(entryId: String, server: String, mode: Int, lastUpdateTime: Int64 = 0, unconsumedMsgCount: Int64 = 0,
                consumerCount: Int = 0) {
        self.entryId = entryId
        self.server = server
        self.mode = mode
        self.lastUpdateTime = lastUpdateTime
        self.unconsumedMsgCount = unconsumedMsgCount
        self.consumerCount = consumerCount
    }

    /// Reads one tab-separated line; `nil` when it has fewer than the six fields or a number does not parse. Fields
    /// after the sixth are ignored (room for later additions).
    public init?(line: Substring) {
        let fields = line.split(separator: "\t", omittingEmptySubsequences: false)
        guard fields.count >= 6, !fields[0].isEmpty, !fields[1].isEmpty,
            let mode = Int(fields[2].trimmingSpaces), let time = Int64(fields[3].trimmingSpaces),
            let unconsumed = Int64(fields[4].trimmingSpaces), let consumers = Int(fields[5].trimmingSpaces)
        else { return nil }
        self.init(entryId: String(fields[0]), server: String(fields[1]), mode: mode, lastUpdateTime: time,
                  unconsumedMsgCount: unconsumed, consumerCount: consumers)
    }

    /// The queue mode bits.
    public var queueMode: QueueMode { QueueMode(rawValue: mode) }

    /// The entry as the tab-separated line trackers send.
    public var description: String {
        "\(entryId)\t\(server)\t\(mode)\t\(lastUpdateTime)\t\(unconsumedMsgCount)\t\(consumerCount)"
    }

    /// Every entry of a body of lines (`\n`, `\r\n`); lines that do not parse are skipped and counted.
    static func parseLines(_ text: String) -> (entries: [ServerEntry], malformed: Int) {
        var entries: [ServerEntry] = []
        var malformed = 0
        for line in text.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" || $0 == "\r" }) {
            if line.allSatisfy({ $0 == " " || $0 == "\t" }) { continue }
            if let entry = ServerEntry(line: line) { entries.append(entry) } else { malformed += 1 }
        }
        return (entries, malformed)
    }
}

/// What a tracker tells a subscriber (zbus 6.3 `TrackSub`): the answer to `sub_all` and the changes it relays.
enum TrackerEvent: Sendable, Equatable {
    /// `server_join`: a broker reported in (`server` header).
    case serverJoin(String)
    /// `server_leave`: a broker stopped or its connection to the tracker dropped.
    case serverLeave(String)
    /// `entry_update`: entries added or refreshed (usually one line).
    case entryUpdate([ServerEntry])
    /// `entry_remove`: an MQ removed from a broker (the body names the entry; the broker is the `server` header, or
    /// a second tab-separated field; `nil` when neither is there).
    case entryRemove(entryId: String, server: String?)
    /// `pub_all`: every entry the tracker knows, the end of its answer to `sub_all`.
    case snapshot([ServerEntry])

    /// The event `message` carries; `nil` for anything else (a heartbeat answer, an unknown command), which a
    /// subscriber ignores.
    init?(_ message: Message) {
        switch message.cmd {
        case "server_join":
            guard let server = message.server?.trimmingWhitespace(), !server.isEmpty else { return nil }
            self = .serverJoin(server)
        case "server_leave":
            guard let server = message.server?.trimmingWhitespace(), !server.isEmpty else { return nil }
            self = .serverLeave(server)
        case "entry_update":
            let entries = ServerEntry.parseLines(message.bodyString).entries
            guard !entries.isEmpty else { return nil }
            self = .entryUpdate(entries)
        case "entry_remove":
            let fields = message.bodyString.trimmingWhitespace().split(separator: "\t", omittingEmptySubsequences: false)
            guard let first = fields.first, !first.isEmpty else { return nil }
            let server = message.server?.trimmingWhitespace() ?? (fields.count > 1 ? String(fields[1]) : nil)
            self = .entryRemove(entryId: String(first), server: server.flatMap { $0.isEmpty ? nil : $0 })
        case "pub_all":
            self = .snapshot(ServerEntry.parseLines(message.bodyString).entries)
        default:
            return nil
        }
    }
}

extension Substring {
    fileprivate var trimmingSpaces: Substring {
        var slice = self
        while slice.first == " " { slice = slice.dropFirst() }
        while slice.last == " " { slice = slice.dropLast() }
        return slice
    }
}
