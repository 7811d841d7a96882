import NIOCore
import ZbusKernel

/// The messages a tracker pushes, in zbus 6.3's form: request-line messages, `cmd` set, no `id`.
enum TrackerMessages {
    /// The push that relays `change`.
    static func push(_ change: TrackerTable.Change) -> Message {
        switch change {
        case .serverJoined(let server): return message(TrackerCommand.serverJoin, server: server)
        case .entryUpdated(let entry): return message(TrackerCommand.entryUpdate, body: entry.line)
        case .entryRemoved(let id, let server): return message(TrackerCommand.entryRemove, server: server, body: id)
        case .serverLeft(let server): return message(TrackerCommand.serverLeave, server: server)
        }
    }

    /// The end of a `sub_all` answer: every entry, one per line, under the subscription's `id`.
    static func pubAll(_ entries: [TrackerEntry], id: String?) -> Message {
        var message = message(TrackerCommand.pubAll, body: entries.isEmpty ? nil : entries.map(\.line).joined(separator: "\n"))
        message.id = id
        return message
    }

    private static func message(_ cmd: String, server: String? = nil, body: String? = nil) -> Message {
        var message = Message(method: "GET", uri: "/", body: body.map { ByteBuffer(string: $0) })
        message.cmd = cmd
        message.server = server
        return message
    }
}
