extension TrackerEntry {
    /// The entry's mode bits as a ``QueueMode``.
    public var queueMode: QueueMode { QueueMode(rawValue: mode) }

    /// Every entry of a body of lines; lines that are not entries, or whose server is not one `HOST:PORT`, are
    /// skipped (a subscriber takes what it can read rather than dropping a whole table for one bad line).
    static func parseLenient(_ text: String) -> [TrackerEntry] {
        text.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" }).compactMap { line in
            guard let entry = try? TrackerEntry(parsing: line), TrackerEvent.isBrokerAddress(entry.server) else { return nil }
            return entry
        }
    }
}

/// What a tracker tells a subscriber (zbus 6.3 `TrackSub`): the answer to `sub_all` and the changes it relays.
enum TrackerEvent: Sendable, Equatable {
    /// `server_join`: a broker reported in (`server` header).
    case serverJoin(String)
    /// `server_leave`: a broker stopped or its connection to the tracker dropped.
    case serverLeave(String)
    /// `entry_update`: entries added or refreshed (usually one line).
    case entryUpdate([TrackerEntry])
    /// `entry_remove`: an MQ removed from a broker (the body names the entry; the broker is the `server` header, or
    /// a second tab-separated field; `nil` when neither is there).
    case entryRemove(entryId: String, server: String?)
    /// `pub_all`: every entry the tracker knows, the end of its answer to `sub_all`.
    case snapshot([TrackerEntry])

    /// The event `message` carries; `nil` for anything else (a heartbeat answer, an unknown command), which a
    /// subscriber ignores.
    init?(_ message: Message) {
        switch message.cmd {
        case "server_join":
            guard let server = message.server?.trimmingWhitespace(), Self.isBrokerAddress(server) else { return nil }
            self = .serverJoin(server)
        case "server_leave":
            guard let server = message.server?.trimmingWhitespace(), !server.isEmpty else { return nil }
            self = .serverLeave(server)
        case "entry_update":
            let entries = TrackerEntry.parseLenient(message.bodyString)
            guard !entries.isEmpty else { return nil }
            self = .entryUpdate(entries)
        case "entry_remove":
            let fields = message.bodyString.trimmingWhitespace().split(separator: "\t", omittingEmptySubsequences: false)
            guard let first = fields.first, !first.isEmpty else { return nil }
            let server = message.server?.trimmingWhitespace() ?? (fields.count > 1 ? String(fields[1]) : nil)
            self = .entryRemove(entryId: String(first), server: server.flatMap { $0.isEmpty ? nil : $0 })
        case "pub_all":
            self = .snapshot(TrackerEntry.parseLenient(message.bodyString))
        default:
            return nil
        }
    }

    /// Whether `server` is an address the client can connect to: a broker the tracker names otherwise (a tracker
    /// that checks nothing, a misconfigured reporter) would fail every request and consumer that picked it.
    static func isBrokerAddress(_ server: String) -> Bool {
        guard !server.isEmpty, !server.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }),
            let address = try? BrokerAddress.parseSingle(server)
        else { return false }
        return (1...65535).contains(address.port)
    }
}
