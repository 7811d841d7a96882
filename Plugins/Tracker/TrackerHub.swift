import Logging
import NIOConcurrencyHelpers
import NIOCore
import ZbusKernel

/// The tracker's table behind a lock, with the subscribers' sessions: applies reports, answers `sub_all`, relays
/// every change.
///
/// Pushes are queued on the subscribers' event loops while the lock is held, always through the loop's task queue
/// (even from that loop, where a send would otherwise be written at once, ahead of pushes other threads queued
/// before): so every subscriber sees the changes in the table's order, and a new subscriber's snapshot is followed by
/// exactly the changes made after it. A subscriber that stops reading is closed by the node once its unread
/// output passes `node.limits.max_output_bytes` (logged), so it never holds memory without bound.
final class TrackerHub: Sendable {
    let settings: TrackerSettings
    private let logger: Logger
    private let state: NIOLockedValueBox<State>

    private struct State {
        var table: TrackerTable
        var subscribers: [String: Session] = [:]
    }

    init(settings: TrackerSettings, logger: Logger) {
        self.settings = settings
        self.logger = logger
        self.state = NIOLockedValueBox(State(table: TrackerTable(limits: settings.limits)))
    }

    /// Monotonic milliseconds: entries age by this clock, immune to wall-clock jumps.
    static func now() -> Int64 { Int64(NIODeadline.now().uptimeNanoseconds / 1_000_000) }

    /// The table as it is now (for the monitor's cluster panel).
    var table: TrackerTable { state.withLockedValue { $0.table } }

    // MARK: - Commands

    func serverJoin(_ request: Message, session: Session) {
        guard let server = server(of: request, session: session) else { return }
        let now = Self.now()
        let changes = apply(request, session: session) { table throws(TrackerTable.Refusal) in
            try table.join(server: server, session: session.id, now: now)
        }
        if !changes.isEmpty {
            logger.info("server joined", metadata: ["server": "\(server)", "remote": "\(session.remoteAddress)"])
        }
    }

    func entryUpdate(_ request: Message, session: Session) {
        guard let body = line(of: request, session: session, what: "an entry (entryId\\tserverAddr\\tmode\\tlastUpdateTime\\tunconsumedMsgCount\\tconsumerCount)") else { return }
        let entry: TrackerEntry
        do throws(TrackerEntry.ParseError) {
            entry = try TrackerEntry(parsing: Substring(body))
        } catch {
            return refuse(request, session, status: 400, "Bad format: entry_update: \(error.description)")
        }
        guard entry.server.utf8.count <= settings.maxLineBytes else {
            return refuse(request, session, status: 400, "Bad format: the server address is over \(settings.maxLineBytes) bytes (tracker.max_line_bytes)")
        }
        if let problem = Self.addressProblem(entry.server) {
            return refuse(request, session, status: 400, "Bad format: entry_update: the server address (field 2) \(problem)")
        }
        if let problem = Self.entryIdProblem(entry.id) {
            return refuse(request, session, status: 400, "Bad format: entry_update: the entry id (field 1) \(problem)")
        }
        let now = Self.now()
        apply(request, session: session) { table throws(TrackerTable.Refusal) in try table.update(entry, session: session.id, now: now) }
    }

    func entryRemove(_ request: Message, session: Session) {
        guard let id = line(of: request, session: session, what: "the entry id") else { return }
        // The `server` header names the reporter (6.3 sends it); without one, the server this connection joined as.
        let server = request.server ?? ""
        apply(request, session: session) { table in
            let owned = table.servers.filter { $0.value.owner == session.id }.keys
            let target = table.servers[server] != nil || owned.count != 1 ? server : owned.first!
            return table.remove(entry: id, server: target)
        }
    }

    func serverLeave(_ request: Message, session: Session) {
        guard let server = server(of: request, session: session) else { return }
        if !apply(request, session: session, { table in table.leave(server: server) }).isEmpty {
            logger.info("server left", metadata: ["server": "\(server)", "remote": "\(session.remoteAddress)"])
        }
    }

    /// `sub_all`: one `server_join` per server, then `pub_all` with every entry and the request's `id`; from then on,
    /// every change.
    func subscribe(_ request: Message, session: Session) {
        let refusal: TrackerTable.Refusal? = state.withLockedValue { state in
            do throws(TrackerTable.Refusal) {
                try state.table.subscribe(session.id)
            } catch {
                return error
            }
            state.subscribers[session.id] = session
            let answer = state.table.serverAddresses.map { TrackerMessages.push(.serverJoined($0)) }
                + [TrackerMessages.pubAll(state.table.entries, id: request.id)]
            Self.push(answer, to: session)
            return nil
        }
        if let refusal {
            logger.warning("subscription refused", metadata: ["remote": "\(session.remoteAddress)", "reason": "\(refusal)"])
            session.send(request.reply(status: 429, body: refusal.description, includeMq: false))
        }
    }

    /// The read-only JSON view of the table (`tracker_info`).
    func info(_ request: Message, session: Session, serverAddress: String) {
        let now = Self.now()
        let (table, subscribers) = state.withLockedValue { ($0.table, $0.subscribers.count) }
        var servers: [String: JSONValue] = [:]
        for (address, server) in table.servers {
            let entries = server.entries.values.sorted { $0.entry.id < $1.entry.id }.map { slot -> JSONValue in
                .object([
                    "id": .string(slot.entry.id), "mode": .int(Int64(slot.entry.mode)),
                    "lastUpdateTime": .int(slot.entry.lastUpdateTime),
                    "unconsumedMsgCount": .int(slot.entry.unconsumedCount),
                    "consumerCount": .int(Int64(slot.entry.consumerCount)),
                    "refreshedMsAgo": .int(now - slot.refreshedAt),
                ])
            }
            servers[address] = .object([
                "entries": .array(entries), "connected": .bool(server.owner != nil),
                "reportedMsAgo": .int(now - server.reportedAt), "refreshes": .bool(server.refreshes),
            ])
        }
        let value: JSONValue = .object([
            "tracker": .string(serverAddress),
            "servers": .object(servers),
            "entryCount": .int(Int64(table.entryCount)),
            "subscribers": .int(Int64(subscribers)),
            "expireAfterMs": .int(table.limits.expireAfterMilliseconds),
        ])
        var reply = request.reply(status: 200, body: value.jsonText, includeMq: false)
        reply.contentType = "application/json"
        session.send(reply)
    }

    // MARK: - Events

    /// A connection closed: it stops hearing, and the servers it reported for leave (pushed at once).
    func sessionClosed(_ session: Session) {
        let changes = state.withLockedValue { state -> [TrackerTable.Change] in
            state.subscribers.removeValue(forKey: session.id)
            let changes = state.table.sessionClosed(session.id)
            relayLocked(changes, state: state)
            return changes
        }
        for case .serverLeft(let server) in changes {
            logger.info("server gone: its connection closed", metadata: ["server": "\(server)", "remote": "\(session.remoteAddress)"])
        }
    }

    /// Removes and relays the entries whose reports stopped.
    func expire() {
        let now = Self.now()
        let changes = state.withLockedValue { state -> [TrackerTable.Change] in
            let changes = state.table.expire(now: now)
            relayLocked(changes, state: state)
            return changes
        }
        for case .entryRemoved(let id, let server) in changes {
            logger.notice("entry expired: not refreshed in time", metadata: [
                "entry": "\(id)", "server": "\(server)", "expire_after_ms": "\(settings.limits.expireAfterMilliseconds)",
            ])
        }
    }

    // MARK: - Helpers

    /// Applies `body` to the table and relays its changes, which it returns; a refusal is answered 429.
    @discardableResult
    private func apply(_ request: Message, session: Session,
                       _ body: (inout TrackerTable) throws(TrackerTable.Refusal) -> [TrackerTable.Change]) -> [TrackerTable.Change] {
        let outcome: Result<[TrackerTable.Change], TrackerTable.Refusal> = state.withLockedValue { state in
            do throws(TrackerTable.Refusal) {
                let changes = try body(&state.table)
                relayLocked(changes, state: state)
                return .success(changes)
            } catch {
                return .failure(error)
            }
        }
        switch outcome {
        case .success(let changes):
            return changes
        case .failure(let refusal):
            refuse(request, session, status: 429, refusal.description)
            return []
        }
    }

    private func relayLocked(_ changes: [TrackerTable.Change], state: State) {
        guard !changes.isEmpty, !state.subscribers.isEmpty else { return }
        let messages = changes.map(TrackerMessages.push)
        for subscriber in state.subscribers.values { Self.push(messages, to: subscriber) }
    }

    /// Queues `messages` on the session's loop, behind whatever was queued before (see the type's comment).
    private static func push(_ messages: [Message], to session: Session) {
        session.eventLoop.execute {
            for message in messages { session.send(message) }
        }
    }

    /// The `server` header of a join or leave, checked; `nil` after a refusal.
    private func server(of request: Message, session: Session) -> String? {
        guard let server = request.server, !server.isEmpty else {
            refuse(request, session, status: 400, "Bad format: \(request.cmd ?? "") needs a `server: HOST:PORT` header")
            return nil
        }
        guard server.utf8.count <= settings.maxLineBytes else {
            refuse(request, session, status: 400, "Bad format: the server address is over \(settings.maxLineBytes) bytes (tracker.max_line_bytes)")
            return nil
        }
        if let problem = Self.addressProblem(server) {
            refuse(request, session, status: 400, "Bad format: \(request.cmd ?? ""): the server address \(problem)")
            return nil
        }
        return server
    }

    /// Why `server` cannot be a broker's address, or `nil` when it can. Subscribers connect to what they are told and
    /// relay it in a header: a control character there (a lone CR) would corrupt their message framing, and a space,
    /// `,` or `;` would read as a tracker list.
    static func addressProblem(_ server: String) -> String? {
        if let bad = server.unicodeScalars.first(where: { $0.value <= 0x20 || (0x7F...0x9F).contains($0.value) || $0 == "," || $0 == ";" }) {
            return "holds U+\(String(bad.value, radix: 16, uppercase: true)), not HOST:PORT (for example 10.0.0.5:15555)"
        }
        guard let address = try? HostAndPort(parsing: server), (1...65535).contains(address.port) else {
            return "'\(server.prefix(64))' is not HOST:PORT with a port of 1...65535 (for example 10.0.0.5:15555)"
        }
        return nil
    }

    /// Why `id` cannot be an entry id (an MQ name), or `nil` when it can: control characters are refused as in MQ
    /// names, since the id is relayed to every subscriber.
    static func entryIdProblem(_ id: String) -> String? {
        guard let bad = id.unicodeScalars.first(where: { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) }) else { return nil }
        return "holds the control character U+\(String(bad.value, radix: 16, uppercase: true))"
    }

    /// The body of an `entry_update` or `entry_remove`: one line within `max_line_bytes`; `nil` after a refusal.
    private func line(of request: Message, session: Session, what: String) -> String? {
        let size = request.body?.readableBytes ?? 0
        guard size <= settings.maxLineBytes else {
            refuse(request, session, status: 413, "\(request.cmd ?? "") body is \(size) bytes, over \(settings.maxLineBytes) (tracker.max_line_bytes)")
            return nil
        }
        var text = request.bodyString
        while text.last == "\n" || text.last == "\r" { text.removeLast() }
        guard !text.isEmpty, !text.contains("\n") else {
            refuse(request, session, status: 400, "Bad format: \(request.cmd ?? "") needs one line: \(what)")
            return nil
        }
        return text
    }

    /// Reports are one-way: the reporter hears only refusals, which are logged here too.
    private func refuse(_ request: Message, _ session: Session, status: Int, _ text: String) {
        logger.warning("tracker report refused", metadata: [
            "cmd": "\(request.cmd ?? "-")", "remote": "\(session.remoteAddress)", "status": "\(status)", "reason": "\(text)",
        ])
        session.send(request.reply(status: status, body: text, includeMq: false))
    }
}
