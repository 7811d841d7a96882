/// One row of a tracker's table: which server hosts which entry (an MQ, or a direct-RPC service), and how busy it is.
///
/// On the wire (`entry_update` bodies, one line each in `pub_all`) it is zbus 6.3's tab-separated text:
/// `entryId \t serverAddr \t mode \t lastUpdateTime \t unconsumedMsgCount \t consumerCount`, for example
/// `HaQ\t127.0.0.1:15556\t1\t1795271766270\t0\t1`.
public struct TrackerEntry: Sendable, Hashable, CustomStringConvertible {
    /// The entry id: the MQ name (or the direct-RPC service's entry id).
    public var id: String
    /// The `host:port` of the server that hosts it.
    public var server: String
    /// The MQ mode bits (1 MQ, 2 pub/sub, 4 memory, 8 RPC, as `mq_mode`).
    public var mode: Int
    /// When the MQ last changed on its server, in milliseconds since 1970.
    public var lastUpdateTime: Int64
    /// Messages waiting on that server.
    public var unconsumedCount: Int64
    /// Consumers connected there.
    public var consumerCount: Int

    /// Creates an entry.
    public init(id: String, server: String, mode: Int, lastUpdateTime: Int64, unconsumedCount: Int64, consumerCount: Int) {
        self.id = id
        self.server = server
        self.mode = mode
        self.lastUpdateTime = lastUpdateTime
        self.unconsumedCount = unconsumedCount
        self.consumerCount = consumerCount
    }

    /// Why a line is not an entry.
    public struct ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        /// What was wrong, and the expected form.
        public let description: String
    }

    /// The wire form: six tab-separated fields, no line end.
    public var line: String {
        "\(id)\t\(server)\t\(mode)\t\(lastUpdateTime)\t\(unconsumedCount)\t\(consumerCount)"
    }

    public var description: String { line }

    /// Parses one line of the wire form (a trailing `\r` is ignored).
    ///
    /// - Throws: ``ParseError`` naming the field that is missing or not a number.
    public init(parsing line: Substring) throws(ParseError) {
        var text = line
        if text.last == "\r" { text = text.dropLast() }
        let fields = text.split(separator: "\t", omittingEmptySubsequences: false)
        guard fields.count >= 6 else {
            throw ParseError(description: "an entry has 6 tab-separated fields (entryId, serverAddr, mode, lastUpdateTime, "
                + "unconsumedMsgCount, consumerCount), found \(fields.count)")
        }
        guard !fields[0].isEmpty else { throw ParseError(description: "the entry id (field 1) is empty") }
        guard !fields[1].isEmpty else { throw ParseError(description: "the server address (field 2) is empty") }
        func number<T: FixedWidthInteger>(_ index: Int, _ name: String, as type: T.Type) throws(ParseError) -> T {
            guard let value = T(fields[index]), value >= 0 else {
                throw ParseError(description: "\(name) (field \(index + 1)) must be a non-negative integer, found '\(fields[index].prefix(32))'")
            }
            return value
        }
        id = String(fields[0])
        server = String(fields[1])
        mode = try number(2, "mode", as: Int.self)
        lastUpdateTime = try number(3, "lastUpdateTime", as: Int64.self)
        unconsumedCount = try number(4, "unconsumedMsgCount", as: Int64.self)
        consumerCount = try number(5, "consumerCount", as: Int.self)
    }

    /// Parses a `pub_all` body: one entry per line, blank lines skipped.
    ///
    /// - Throws: ``ParseError`` for the first line that is not an entry, prefixed with its line number.
    public static func parseLines(_ body: String) throws(ParseError) -> [TrackerEntry] {
        var entries: [TrackerEntry] = []
        for (number, line) in body.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            if line.isEmpty || line == "\r" { continue }
            do throws(ParseError) {
                entries.append(try TrackerEntry(parsing: line))
            } catch {
                throw ParseError(description: "line \(number + 1): \(error.description)")
            }
        }
        return entries
    }
}

/// The `cmd` values of the tracker protocol (zbus 6.3 `TrackPub`, `TrackSub`, `TrackServer`).
public enum TrackerCommand {
    /// Broker to tracker, and tracker to subscribers: a server (`server` header) is up.
    public static let serverJoin = "server_join"
    /// Broker to tracker, and relayed: an entry (tab-separated body) was created or changed.
    public static let entryUpdate = "entry_update"
    /// Broker to tracker, and relayed: an entry (body: its id; `server` header) is gone.
    public static let entryRemove = "entry_remove"
    /// Broker to tracker, and relayed: a server (`server` header) is gone, with all its entries.
    public static let serverLeave = "server_leave"
    /// Client to tracker: subscribe to the table.
    public static let subAll = "sub_all"
    /// Tracker to a new subscriber: every entry, one per line, with the subscription's `id`.
    public static let pubAll = "pub_all"

    /// The commands a reporting server sends, whose `server` header names the reporter: the node keeps it rather
    /// than stamping its own address there.
    public static let reports: Set<String> = [serverJoin, entryUpdate, entryRemove, serverLeave]
}
