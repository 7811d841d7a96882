import Atomics
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ZbusKernel

/// The MQ table of a node and the command logic over it.
final class MQBroker: Sendable {
    let settings: MQSettings
    private let node: NodeConfig
    private let logger: Logger
    private let state = NIOLockedValueBox(State())
    /// The MQ table as read on every request: an immutable snapshot swapped on create and remove, so lookups take
    /// no lock (the event loops would otherwise contend on it for every message).
    private let table = ManagedAtomic(QueueTable(version: 0, queues: [:]))
    /// The version of `table`, moved after each swap. Each thread keeps the snapshot it last loaded and reloads only
    /// when this moves: loading the atomic reference itself is a read-modify-write of a word that both event loops
    /// would otherwise bounce between their cores on every message. Versions are unique across every broker of the
    /// process, so a thread's snapshot is never taken for another broker's (one thread-specific slot serves them all).
    private let tableVersion = ManagedAtomic<UInt64>(0)
    private static let versions = ManagedAtomic<UInt64>(0)
    private static let threadTable = ThreadSpecificVariable<QueueTable>()
    private let routeDropped = ManagedAtomic<UInt64>(0)

    private struct State {
        var store: QueueStore?
        var sessions: SessionRegistry?
        var serverAddress = ""
        var queues: [String: MessageQueue] = [:]
        var eventLoopGroup: (any EventLoopGroup)?
    }

    init(settings: MQSettings, node: NodeConfig, logger: Logger) {
        self.settings = settings
        self.node = node
        self.logger = logger
    }

    // MARK: - Life cycle

    /// Opens the store and rebuilds every MQ found in it, with its mode, token, creator, master link and backlog.
    func start(_ context: NodeContext) throws {
        let directory = node.store.hasSuffix("/") ? node.store + "mq" : node.store + "/mq"
        let store = try QueueStore(directory: directory, fsync: settings.fsync, segmentBytes: settings.segmentBytes, logger: logger)
        var queues: [String: MessageQueue] = [:]
        for name in store.queueNames() {
            do {
                let durable = try store.open(name: name, metadata: nil)
                guard let definition = try? JSONDecoder().decode(MQDefinition.self, from: Data(durable.metadata)) else {
                    logger.error("MQ definition unreadable; MQ skipped (its files are kept)", metadata: ["mq": "\(name)"])
                    continue
                }
                queues[name] = makeQueue(definition, durable: durable)
            } catch {
                logger.error("MQ could not be opened; skipped", metadata: ["mq": "\(name)", "error": "\(error)"])
            }
        }
        for queue in queues.values {
            if let master = queue.currentDefinition.masterMq, let masterQueue = queues[master] {
                masterQueue.attachSlave(queue)
            }
        }
        state.withLockedValue {
            $0.store = store
            $0.sessions = context.sessions
            $0.serverAddress = context.serverAddress
            $0.queues = queues
            $0.eventLoopGroup = context.eventLoopGroup
            publish(queues)
        }
        logger.info("MQ store open", metadata: ["directory": "\(directory)", "mqs": "\(queues.count)", "fsync": "\(settings.fsync)"])
    }

    /// Closes the store (flushing and syncing it).
    func shutdown() {
        let (store, queues, group) = state.withLockedValue { state -> (QueueStore?, [MessageQueue], (any EventLoopGroup)?) in
            defer {
                state.store = nil
                state.queues = [:]
                publish([:])
            }
            return (state.store, Array(state.queues.values), state.eventLoopGroup)
        }
        releaseCachedTables(on: group)
        // Parked consumers are not answered: their connections close with the node, and a client reconnects to the
        // next node rather than reading a 404 as "the MQ is gone".
        for queue in queues {
            _ = queue.close()
            queue.noteAcknowledgementsForRestart()
        }
        store?.close()
    }

    /// A connection closed: its pulls go, and messages it held go back to their queues.
    func sessionClosed(_ session: Session) {
        let queues = state.withLockedValue { Array($0.queues.values) }
        for queue in queues { queue.sessionClosed(session).send() }
    }

    private func makeQueue(_ definition: MQDefinition, durable: DurableQueue) -> MessageQueue {
        let backend: any QueueBackend = definition.modeBits.isMemoryOnly
            ? MemoryBackend()
            : DurableBackend(queue: durable, fsyncAlways: settings.fsync == .always)
        let limits = MessageQueue.Limits(keyLimit: settings.keyLimit, maxKeys: settings.maxKeys, maxKeyGroups: settings.maxKeyGroups,
                                         subscriberBuffer: settings.subscriberBuffer, subscriberBufferBytes: settings.subscriberBufferBytes,
                                         maxParkedConsumes: settings.maxParkedConsumes)
        return MessageQueue(definition: definition, backend: backend, durableQueue: durable, limits: limits, logger: logger)
    }

    private func queue(named name: String?) -> MessageQueue? {
        guard let name else { return nil }
        let version = tableVersion.load(ordering: .acquiring)
        if let cached = Self.threadTable.currentValue, cached.version == version { return cached.queue(named: name) }
        let snapshot = table.load(ordering: .acquiring)
        Self.threadTable.currentValue = snapshot
        return snapshot.queue(named: name)
    }

    /// Publishes the table after a change; called with the state lock held, so snapshots never go backwards.
    /// The table is stored before its version moves, so a thread that sees the new version loads the new table.
    private func publish(_ queues: [String: MessageQueue]) {
        let version = Self.versions.wrappingIncrementThenLoad(ordering: .relaxed)
        table.store(QueueTable(version: version, queues: queues), ordering: .releasing)
        tableVersion.store(version, ordering: .releasing)
    }

    /// Drops the tables the threads keep (see `tableVersion`), so that a removed MQ, or a stopped broker's MQs, and
    /// their open files are released now rather than whenever each thread next looks an MQ up (an idle event loop
    /// would hold them indefinitely). Runs on remove and shutdown only; the next lookup on each thread reloads.
    private func releaseCachedTables(on group: (any EventLoopGroup)?) {
        Self.threadTable.currentValue = nil
        guard let group else { return }
        for loop in group.makeIterator() {
            loop.execute { Self.threadTable.currentValue = nil }
        }
    }

    // MARK: - Replies

    private static func timeBody() -> String { String(Clock.milliseconds()) }


    private static func notFound(_ request: Message, name: String?) -> Message {
        request.reply(status: 404, body: "MQ(\(name ?? "null")) Not Found")
    }

    private static func badFormat(_ request: Message, _ detail: String) -> Message {
        request.reply(status: 400, body: "Bad format: \(detail)", includeMq: false)
    }

    private func registerTokenValid(_ request: Message) -> Bool {
        (request.headers[HeaderName.registerToken] ?? "") == settings.registerToken
    }

    // MARK: - produce

    func produce(_ request: Message, session: Session) {
        // Each header is looked up once (a lookup is a scan of the header block), and `key_group` only with a `key`.
        let mq = request.mq
        guard let queue = queue(named: mq) else { return session.send(Self.notFound(request, name: mq)) }
        guard (request.token ?? "") == queue.accessToken else {
            return session.send(request.reply(status: 403, body: "MQ(\(queue.name)) forbidden"))
        }
        let wantsAck = request.ack
        // The receipt needs only the request's id and mq: taking those rather than the request keeps the message's
        // storage uniquely owned on its way to the store.
        let receipt = MessageQueue.ProduceReceipt(session: session, id: request.id, mq: mq, wantsAck: wantsAck)
        let key = request.key
        do throws(MessageQueue.ProduceRefusal) {
            let deliveries = try queue.produce(request, key: key, keyGroup: key == nil ? "" : request.keyGroup ?? "",
                                               on: session.eventLoop, receipt: receipt)
            deliveries.send()
        } catch {
            switch error {
            case .serviceDown:
                session.send(request.reply(status: 404, body: "MQ(\(queue.name)) Service Down"))
            case .duplicateKey:
                if wantsAck { session.send(request.reply(status: 406, body: Self.timeBody())) }
            case .tooManyKeyGroups(let limit):
                session.send(request.reply(status: 429, body: Self.keyGroupLimitBody(queue.name, limit: limit) + "; nothing stored"))
            case .full(let limit):
                session.send(request.reply(status: 429, body: "MQ(\(queue.name)) is full: \(limit) messages waiting (max_length); nothing stored"))
            case .store(let storeError):
                logger.error("store append failed", metadata: ["mq": "\(queue.name)", "error": "\(storeError)"])
                session.send(request.reply(status: 500, body: "MQ(\(queue.name)) store failure: \(storeError)"))
            }
        }
    }

    // MARK: - URL RPC

    /// A request without `cmd` whose URL names an RPC-mode MQ becomes a produce (with `ack: 0`) of a JSON RPC
    /// request; the service's routed reply is the HTTP response. Anything else gets zbus 6's 400.
    func urlCall(_ request: Message, session: Session) {
        guard let name = request.mq, let queue = queue(named: name), queue.mode.contains(.rpc) else {
            return session.send(request.reply(status: 400, body: "Bad format: command(null) not support", includeMq: false))
        }
        let url = request.urlRequest
        // A fourth path segment carries the params (`/Calc/calc/plus/1,2`), which 6.3.0 ignored.
        let params = url.params ?? (url.pathSegments.count > 3 ? url.pathSegments[3] : nil)
        var call = request
        call.cmd = "produce"
        call.ack = false
        call.contentType = "application/json"
        call.setBody(UrlRpc.body(module: url.module ?? "", method: url.method ?? "", params: params))
        produce(call, session: session)
    }

    // MARK: - consume

    func consume(_ request: Message, session: Session) {
        guard let queue = queue(named: request.mq) else { return session.send(Self.notFound(request, name: request.mq)) }
        guard (request.token ?? "") == queue.accessToken else {
            return session.send(request.reply(status: 403, body: "MQ(\(queue.name)) forbidden"))
        }
        var timeout: Int64?
        if let text = request.timeout {
            // Header values arrive trimmed (the parser strips optional whitespace), so no Foundation trimming here.
            guard let value = Int64(text), value >= 0, value <= 86_400_000 else {
                return session.send(Self.badFormat(request, "timeout must be milliseconds (0...86400000), got '\(text)'"))
            }
            timeout = value
        }
        let topics = request.topic.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }
        queue.consume(session: session, requestId: request.id, topics: topics, timeoutMilliseconds: timeout,
                      closeAfterReply: request.closeRequested).send()
    }

    // MARK: - route

    func route(_ request: Message, session: Session) {
        guard let recver = request.recver, let target = state.withLockedValue({ $0.sessions?.session(id: recver) }) else {
            let dropped = routeDropped.wrappingIncrementThenLoad(ordering: .relaxed)
            logger.notice("route to an unknown recver dropped", metadata: [
                "recver": "\(request.recver ?? "-")", "id": "\(request.id ?? "-")", "dropped": "\(dropped)",
            ])
            return
        }
        var message = request
        message.headers.removeValue(lowercased: HeaderName.cmd)
        message.headers.removeValue(lowercased: HeaderName.ack)
        message.headers.removeValue(lowercased: HeaderName.recver)
        if let code = message.headers.removeValue(lowercased: HeaderName.replyCode), let status = Int(code),
            (100...999).contains(status)
        {
            message.startLine = .status(code: status, reason: nil)
        } else if case .request = message.startLine {
            message.startLine = .status(code: 200, reason: nil)
        }
        message.closeRequested = false
        target.send(message)
    }

    // MARK: - create_mq / remove_mq

    func createMQ(_ request: Message, session: Session) {
        guard registerTokenValid(request) else {
            return session.send(request.reply(status: 403, body: "register_token mismatch", includeMq: false))
        }
        guard let name = request.headers[HeaderName.mqName]?.trimmingCharacters(in: .whitespaces), !name.isEmpty else {
            return session.send(Self.badFormat(request, "Missing mq_name"))
        }
        guard let modeText = request.headers[HeaderName.mqMode] else { return session.send(Self.badFormat(request, "Missing mq_mode")) }
        guard let mode = Int(modeText.trimmingCharacters(in: .whitespaces)), (0...15).contains(mode) else {
            return session.send(Self.badFormat(request, "mq_mode invalid"))
        }
        var maxLength = settings.maxLength
        if let text = request.headers["max_length"] {
            guard let value = Int64(text.trimmingCharacters(in: .whitespaces)), value >= 0 else {
                return session.send(Self.badFormat(request, "max_length must be a non-negative integer, got '\(text)'"))
            }
            maxLength = value
        }
        let result: Result<Void, QueueStoreError> = state.withLockedValue { state in
            guard state.queues[name] == nil else { return .success(()) }
            guard let store = state.store else { return .failure(.storeClosed(directory: node.store)) }
            var definition = MQDefinition(name: name, mode: mode == 0 ? MQMode.mq.rawValue : mode,
                                          accessToken: request.headers[HeaderName.accessToken] ?? "",
                                          creator: request.remoteAddr ?? session.remoteAddress,
                                          masterMq: nil, maxLength: maxLength, createdAt: Clock.milliseconds())
            var master: MessageQueue?
            if let masterName = request.headers[HeaderName.masterMq], let candidate = state.queues[masterName] {
                if candidate.accessToken == (request.headers[HeaderName.masterToken] ?? "") {
                    definition.masterMq = masterName
                    master = candidate
                } else {
                    logger.notice("master_token mismatch; MQ created without a master", metadata: ["mq": "\(name)", "master": "\(masterName)"])
                }
            }
            do {
                let metadata = Array(try JSONEncoder().encode(definition))
                let durable = try store.open(name: name, metadata: metadata)
                let queue = makeQueue(definition, durable: durable)
                state.queues[name] = queue
                publish(state.queues)
                master?.attachSlave(queue)
                return .success(())
            } catch let error as QueueStoreError {
                return .failure(error)
            } catch {
                return .failure(.io(path: name, operation: "encode definition", errno: 0))
            }
        }
        switch result {
        case .success:
            session.send(request.reply(status: 200, body: Self.timeBody(), includeMq: false))
        case .failure(let error):
            logger.error("create_mq failed", metadata: ["mq": "\(name)", "error": "\(error)"])
            session.send(request.reply(status: 500, body: "MQ(\(name)) could not be created: \(error)", includeMq: false))
        }
    }

    func removeMQ(_ request: Message, session: Session) {
        guard registerTokenValid(request) else {
            return session.send(request.reply(status: 403, body: "register_token mismatch", includeMq: false))
        }
        guard let name = request.headers[HeaderName.mqName]?.trimmingCharacters(in: .whitespaces), !name.isEmpty else {
            return session.send(Self.badFormat(request, "Missing mq_name"))
        }
        let removed: (MessageQueue, QueueStore?, [MessageQueue], (any EventLoopGroup)?)? = state.withLockedValue { state in
            guard let queue = state.queues.removeValue(forKey: name) else { return nil }
            publish(state.queues)
            return (queue, state.store, Array(state.queues.values), state.eventLoopGroup)
        }
        guard let (queue, store, others, group) = removed else {
            return session.send(request.reply(status: 404, body: "MQ(\(name)) Not Found", includeMq: false))
        }
        releaseCachedTables(on: group)
        for other in others { other.detachSlave(named: name) }
        queue.close().send()
        do {
            try store?.remove(name: name)
        } catch {
            logger.error("remove_mq could not delete the files", metadata: ["mq": "\(name)", "error": "\(error)"])
        }
        session.send(request.reply(status: 200, body: Self.timeBody(), includeMq: false))
    }

    // MARK: - query_mq / data

    func queryMQ(_ request: Message, session: Session) {
        guard let name = request.mq else { return data(request, session: session) }
        guard let queue = queue(named: name) else { return session.send(Self.notFound(request, name: name)) }
        session.send(json(request, queue.info(includeConsumers: true)))
    }

    func data(_ request: Message, session: Session) {
        let (queues, address) = state.withLockedValue { (Array($0.queues.values), $0.serverAddress) }
        var table: [String: JSONValue] = [:]
        for queue in queues { table[queue.name] = queue.info(includeConsumers: false) }
        let info: JSONValue = .object([
            "mqTable": .object(table),
            "lastUpdatedTime": .int(Clock.milliseconds()),
            "broker": .string(address),
            "routeDropped": .int(Int64(routeDropped.load(ordering: .relaxed))),
        ])
        session.send(json(request, info))
    }

    private func json(_ request: Message, _ value: JSONValue) -> Message {
        var reply = request.reply(status: 200, body: value.jsonText, includeMq: false)
        reply.contentType = "application/json"
        return reply
    }

    // MARK: - add_key / remove_key

    func addKey(_ request: Message, session: Session) {
        keyCommand(request, session: session) { filter, key, group in
            guard let key else { return 0 }
            switch filter.add(key, group: group) {
            case .added: return 1
            case .duplicate: return 0
            case .tooManyGroups: return nil
            }
        }
    }

    /// The refusal of a key in a new key group beyond `max_key_groups`.
    private static func keyGroupLimitBody(_ queue: String, limit: Int) -> String {
        "MQ(\(queue)) key group limit reached: \(limit) key groups (mq.max_key_groups)"
    }

    func removeKey(_ request: Message, session: Session) {
        let hasGroup = request.keyGroup != nil
        keyCommand(request, session: session) { filter, key, group in
            if let key { return filter.remove(key, group: group) }
            return hasGroup ? filter.removeGroup(group) : filter.removeAll()
        }
    }

    /// Runs `body` on the MQ's key filter; a nil count means the key group limit refused the command (answered
    /// whether or not an acknowledgement was asked for, as every refusal is).
    private func keyCommand(_ request: Message, session: Session, _ body: (inout KeyFilter, String?, String) -> Int?) {
        guard registerTokenValid(request) else {
            return session.send(request.reply(status: 403, body: "register_token mismatch"))
        }
        guard let queue = queue(named: request.mq) else { return session.send(Self.notFound(request, name: request.mq)) }
        let (count, groupLimit) = queue.withKeyFilter { (body(&$0, request.key, request.keyGroup ?? ""), $0.maxGroups) }
        guard let count else {
            return session.send(request.reply(status: 429, body: Self.keyGroupLimitBody(queue.name, limit: groupLimit)))
        }
        if request.ack { session.send(request.reply(status: 200, body: String(count))) }
    }
}

/// An immutable MQ table, swapped atomically.
final class QueueTable: AtomicReference, Sendable {
    /// Unique among all tables of the process (0 for every broker's initial empty table, which no thread caches
    /// under a broker's later version).
    let version: UInt64
    let queues: [String: MessageQueue]
    /// The same MQs in a short array while there are few: comparing a few names costs less than hashing one
    /// (a lookup for every message produced or consumed).
    private let few: [(name: String, queue: MessageQueue)]?

    /// Up to this many MQs are looked up by comparing names.
    private static let fewLimit = 8

    init(version: UInt64, queues: [String: MessageQueue]) {
        self.version = version
        self.queues = queues
        self.few = queues.count <= Self.fewLimit ? queues.map { (name: $0.key, queue: $0.value) } : nil
    }

    /// The MQ called `name`, if any.
    func queue(named name: String) -> MessageQueue? {
        guard let few else { return queues[name] }
        let length = name.utf8.count
        for entry in few where entry.name.utf8.count == length && entry.name == name { return entry.queue }
        return nil
    }
}
