import Atomics
import CoreMetrics
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ZbusKernel
import ZbusStore

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
    /// The bytes every MQ's dedupe keys may hold together (`max_key_bytes`).
    private let keyBudget: KeyMemoryBudget
    /// The MQs each session consumed from (see ``SessionQueueIndex``).
    private let sessionIndex: SessionQueueIndex
    /// The MQs each session produced to (for `route`).
    private let routeIndex = RouteIndex()
    /// The node's `auth` section; `nil` keeps zbus 6.3's tokens alone.
    private let policy: AccessPolicy?
    /// Told when an MQ is created or removed or its consumers change (see ``MQTrackedEntries``).
    let entryObservers = TrackedEntryObservers()

    private struct State {
        var store: QueueStore?
        var sessions: SessionRegistry?
        var serverAddress = ""
        /// The open MQs (the lookup table publishes these).
        var queues: [String: MessageQueue] = [:]
        /// MQs of the store not opened yet (their files are closed), by name: opened on first use, so that a store
        /// holding more MQs than the descriptor limit allows still starts and serves.
        var unopened: [String: MQDefinition] = [:]
        /// Master links of open and unopened MQs alike, free of cycles and over-long chains.
        var links = MasterLinks()
        var eventLoopGroup: (any EventLoopGroup)?
        /// Samples every MQ's counters once a second (rates, the oldest waiting message's age).
        var sampler: RepeatedTask?

        var mqCount: Int { queues.count + unopened.count }
    }

    init(settings: MQSettings, node: NodeConfig, logger: Logger) {
        self.settings = settings
        self.node = node
        self.logger = logger
        self.keyBudget = KeyMemoryBudget(limit: settings.maxKeyBytes)
        self.sessionIndex = SessionQueueIndex(observers: entryObservers)
        self.policy = node.auth
    }

    // MARK: - Life cycle

    /// Opens the store and rebuilds every MQ found in it, with its mode, token, creator, master link and backlog.
    ///
    /// Only the definitions are read for all of them; MQs are opened while half the descriptors left beside the
    /// reserve allow (the rest stays for connections and for opening the others on first use). Stored master links
    /// that form a cycle or an over-long chain (written before links were checked) are broken, with an error logged.
    func start(_ context: NodeContext) throws {
        let directory = node.store.hasSuffix("/") ? node.store + "mq" : node.store + "/mq"
        // Each sync's duration goes to the fsync latency histogram of `/metrics` (a sync takes milliseconds; recording
        // it costs next to nothing beside it).
        let fsyncTimer = CoreMetrics.Timer(label: "zbus_store_fsync_duration_seconds", factory: context.metricsFactory)
        let store = try QueueStore(directory: directory, fsync: settings.fsync, segmentBytes: settings.segmentBytes, logger: logger,
                                   onSync: { duration in
                                       let (seconds, attoseconds) = duration.components
                                       fsyncTimer.recordNanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
                                   })
        var definitions: [String: MQDefinition] = [:]
        for name in store.queueNames() {
            do {
                guard let bytes = try store.storedMetadata(name: name),
                    let definition = try? JSONDecoder().decode(MQDefinition.self, from: Data(bytes))
                else {
                    logger.error("MQ definition unreadable; MQ skipped (its files are kept)", metadata: ["mq": "\(name)"])
                    continue
                }
                definitions[name] = definition
            } catch {
                logger.error("MQ could not be read; skipped", metadata: ["mq": "\(name)", "error": "\(error)"])
            }
        }
        // A master that is gone, or was created after its slave, was removed (and perhaps created again) since the
        // link was made (a slave is created after its master): the slave's stored link named the old MQ, and an MQ
        // created later under that name is another one, so the link is not followed.
        let stored = definitions.compactMapValues { definition -> String? in
            guard let master = definition.masterMq else { return nil }
            guard let masterDefinition = definitions[master], masterDefinition.createdAt <= definition.createdAt else {
                logger.notice("stored master link ignored: the master was removed since", metadata: [
                    "mq": "\(MQNameRules.shown(definition.name))", "master": "\(MQNameRules.shown(master))",
                ])
                return nil
            }
            return master
        }
        let (links, broken) = MasterLinks.load(stored, maxDepth: settings.maxMasterDepth)
        for link in broken {
            logger.error("stored master link ignored: \(link.problem); the MQ runs without its master", metadata: [
                "mq": "\(MQNameRules.shown(link.slave))", "master": "\(MQNameRules.shown(link.master))",
            ])
        }
        if definitions.count > settings.maxMqs {
            logger.warning("the store holds more MQs than mq.max_mqs allows; all are served, creates are refused", metadata: [
                "mqs": "\(definitions.count)", "max_mqs": "\(settings.maxMqs)",
            ])
        }
        let (opened, left) = state.withLockedValue { state -> (Int, Int) in
            state.store = store
            state.sessions = context.sessions
            state.serverAddress = context.serverAddress
            state.eventLoopGroup = context.eventLoopGroup
            state.unopened = definitions
            state.links = links
            var room = DescriptorBudget.room().map { $0.mqs / 2 } ?? Int.max
            for name in definitions.keys.sorted() where state.unopened[name] != nil {
                let group = unopenedGroup(of: name, in: state)
                guard group.count <= room else { continue }
                do {
                    _ = try openLocked(name, state: &state)
                    room -= group.count
                } catch {
                    logger.error("MQ could not be opened; it is tried again on first use", metadata: ["mq": "\(MQNameRules.shown(name))", "error": "\(error)"])
                }
            }
            publish(state.queues)
            let loop = context.eventLoopGroup.next()
            // A strong reference, released when `shutdown()` cancels the task: a weak one would give the broker a
            // side table, and every retain and release of it (several per request) would take the slow path.
            state.sampler = loop.scheduleRepeatedTask(initialDelay: .zero, delay: .seconds(1)) { [self] _ in
                sampleQueues()
            }
            return (state.queues.count, state.unopened.count)
        }
        logger.info("MQ store open", metadata: [
            "directory": "\(directory)", "mqs": "\(opened + left)", "opened": "\(opened)", "fsync": "\(settings.fsync)",
        ])
    }

    /// `name` and the unopened MQs below it: an MQ opens with every slave it copies to.
    private func unopenedGroup(of name: String, in state: State) -> [String] {
        [name] + state.links.descendants(of: name).filter { state.unopened[$0] != nil }
    }

    /// Opens the unopened MQ `name` with its unopened slaves (a master must never copy past a slave that is not
    /// open), adds them to the table (the caller publishes it) and links each to its open master and open slaves.
    private func openLocked(_ name: String, state: inout State) throws(QueueStoreError) -> MessageQueue {
        guard let store = state.store else { throw .storeClosed(directory: node.store) }
        var opened: [String] = []
        for member in unopenedGroup(of: name, in: state) {
            guard let definition = state.unopened[member] else { continue }
            do {
                let durable = try store.open(name: member, metadata: nil)
                state.queues[member] = makeQueue(definition, durable: durable)
                state.unopened[member] = nil
                opened.append(member)
            } catch where member != name {
                // The MQ itself is open; a slave that cannot be opened misses copies until it opens, which its
                // own first use retries.
                logger.error("slave MQ could not be opened with its master", metadata: ["mq": "\(MQNameRules.shown(member))", "error": "\(error)"])
            }
        }
        attachLinks(of: Set(opened), state: state)
        return state.queues[name]!
    }

    /// Attaches each MQ of `names` to its open master, and the open slaves of each to it.
    private func attachLinks(of names: Set<String>, state: State) {
        for (slave, master) in state.links.masters where names.contains(slave) || names.contains(master) {
            if let masterQueue = state.queues[master], let slaveQueue = state.queues[slave] {
                masterQueue.attachSlave(slaveQueue)
            }
        }
    }

    /// What opening an MQ on first use found.
    private enum Wake {
        case opened(MessageQueue)
        case missing
        case refused(status: Int, reason: String)
    }

    /// MQs whose files were opened, not yet in the table.
    private struct OpenedMQs: Sendable {
        let store: QueueStore
        let members: [(name: String, definition: MQDefinition, durable: DurableQueue)]
    }

    /// What opening an unopened MQ came to.
    private enum Opening {
        case done(Wake)
        case opened(OpenedMQs)
    }

    /// Opens the files of the unopened MQ `name` and its unopened slaves (first use after a start that left it
    /// closed). Runs on the store's I/O thread (opening files may wait for the disk); the state lock is not held
    /// while the files open, so event loops that take it are never held up by the disk. ``install(_:for:)`` then
    /// puts them in the table.
    private func openUnopened(_ name: String) -> Opening {
        enum Plan {
            case done(Wake)
            case open(QueueStore, [(name: String, definition: MQDefinition)])
        }
        let plan = state.withLockedValue { state -> Plan in
            if let queue = state.queues[name] { return .done(.opened(queue)) }  // opened meanwhile
            guard state.unopened[name] != nil else { return .done(.missing) }
            let group = unopenedGroup(of: name, in: state)
            if let refusal = DescriptorBudget.refusal(opening: group.count) { return .done(.refused(status: 503, reason: refusal)) }
            guard let store = state.store else { return .done(.refused(status: 503, reason: "the MQ store is closed")) }
            return .open(store, group.compactMap { member in state.unopened[member].map { (member, $0) } })
        }
        switch plan {
        case .done(let wake):
            return .done(wake)
        case .open(let store, let members):
            var opened: [(name: String, definition: MQDefinition, durable: DurableQueue)] = []
            for member in members {
                do throws(QueueStoreError) {
                    opened.append((member.name, member.definition, try store.open(name: member.name, metadata: nil)))
                } catch {
                    logger.error("MQ could not be opened", metadata: ["mq": "\(MQNameRules.shown(member.name))", "error": "\(error)"])
                    // A slave that cannot be opened misses copies until it opens, which its own first use retries.
                    if member.name == name { return .done(.refused(status: Self.status(of: error), reason: "\(error)")) }
                }
            }
            return .opened(OpenedMQs(store: store, members: opened))
        }
    }

    /// Puts MQs opened by ``openUnopened(_:)`` in the table (those still unopened: another request may have put
    /// them there first) and links them to their open masters and slaves.
    private func install(_ opened: OpenedMQs, for name: String) -> Wake {
        state.withLockedValue { state -> Wake in
            guard state.store === opened.store else { return .refused(status: 503, reason: "the MQ store is closed") }
            var installed: Set<String> = []
            for entry in opened.members where state.unopened[entry.name] != nil {
                state.queues[entry.name] = makeQueue(entry.definition, durable: entry.durable)
                state.unopened[entry.name] = nil
                installed.insert(entry.name)
            }
            if !installed.isEmpty {
                attachLinks(of: installed, state: state)
                publish(state.queues)
            }
            return state.queues[name].map { .opened($0) } ?? .missing
        }
    }

    /// Opens the unopened MQ `name` on the store's I/O thread, then, on `eventLoop`, puts it in the table and calls
    /// `then` with the outcome. Installing on the requester's loop keeps one connection's requests in order: a later
    /// request of the same connection either finds the MQ unopened too (and is queued behind this one) or comes
    /// after `then` has run.
    private func open(_ name: String, store: QueueStore, on eventLoop: any EventLoop,
                      then: @escaping @Sendable (Wake) -> Void) {
        store.execute { [self] in
            switch openUnopened(name) {
            case .done(let wake):
                eventLoop.execute { then(wake) }
            case .opened(let opened):
                eventLoop.execute { then(self.install(opened, for: name)) }
            }
        }
    }

    /// The MQ a request names when it is not in the lookup table. An unopened MQ of the store is opened on the store's
    /// I/O thread and the request is then run again by `retry` on its session's event loop (in the order the
    /// requests came: opens are done one at a time, and each retry is queued on the loop once its MQ is open);
    /// otherwise the reply (404, 400 for a name no MQ can have, 503 when it cannot be opened now) is sent. Returns
    /// `nil` in both cases: the caller stops there.
    @inline(never)
    private func lookUpSlowly(_ name: String?, _ request: Message, _ session: Session,
                              retry: @escaping @Sendable () -> Void) -> MessageQueue? {
        guard let name else {
            session.send(Self.notFound(request, name: nil))
            return nil
        }
        let (found, store, storedToken) = state.withLockedValue { state in
            (state.queues[name], state.unopened[name] != nil ? state.store : nil, state.unopened[name]?.accessToken)
        }
        if let found { return found }
        guard let store else {
            session.send(notFound(request, name: name, session: session))
            return nil
        }
        // Under `auth`, a caller with no permission on the name and without the MQ's access token is refused before
        // the MQ is opened (with the same answer as for a missing MQ): guessing names must not make the node open
        // files and spend descriptors.
        if policy != nil, !mayRead(name: name, accessToken: storedToken ?? "", token: request.presentedToken, session: session) {
            session.send(notFound(request, name: name, session: session))
            return nil
        }
        open(name, store: store, on: session.eventLoop) { wake in
            switch wake {
            case .opened:
                retry()
            case .missing:
                session.send(self.notFound(request, name: name, session: session))
            case .refused(let status, let reason):
                session.send(request.reply(status: status, body: "MQ(\(MQNameRules.shown(name))) cannot be opened now: \(reason)", includeMq: false))
            }
        }
        return nil
    }

    /// 503 for a shortage that passes (descriptors), 500 for anything else the store reports.
    private static func status(of error: QueueStoreError) -> Int {
        switch error {
        case .io(_, _, let code) where code == EMFILE || code == ENFILE: return 503
        case .invalidQueueName: return 400
        default: return 500
        }
    }

    /// Closes the store (flushing and syncing it).
    func shutdown() {
        let (store, queues, group) = state.withLockedValue { state -> (QueueStore?, [MessageQueue], (any EventLoopGroup)?) in
            state.sampler?.cancel()
            state.sampler = nil
            defer {
                state.store = nil
                state.queues = [:]
                state.unopened = [:]
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
        routeIndex.forget(session)
        let touched = sessionIndex.take(session)
        guard !touched.isEmpty else { return }
        // Only MQs still in the table: a removed one must not hand its messages out again.
        let queues = state.withLockedValue { state in touched.filter { state.queues[$0.name] === $0 } }
        for queue in queues {
            queue.sessionClosed(session).send()
            entryObservers.notify(.changed(queue.name))
        }
    }

    private func makeQueue(_ definition: MQDefinition, durable: DurableQueue) -> MessageQueue {
        let backend: any QueueBackend = definition.modeBits.isMemoryOnly
            ? MemoryBackend()
            : DurableBackend(queue: durable, fsyncAlways: settings.fsync == .always)
        let limits = MessageQueue.Limits(keyLimit: settings.keyLimit, maxKeys: settings.maxKeys, maxKeyGroups: settings.maxKeyGroups,
                                         subscriberBuffer: settings.subscriberBuffer, subscriberBufferBytes: settings.subscriberBufferBytes,
                                         maxParkedConsumes: settings.maxParkedConsumes, keyBudget: keyBudget,
                                         sessionIndex: sessionIndex)
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


    /// 404 for a missing MQ; 400 naming the rule, with only a short prefix of the name, when no MQ can have it.
    private static func notFound(_ request: Message, name: String?) -> Message {
        if let name, let problem = MQNameRules.problem(name) {
            return badFormat(request, "\(problem): '\(MQNameRules.shown(name))'")
        }
        return request.reply(status: 404, body: "MQ(\(name ?? "null")) Not Found")
    }

    /// 404 for a missing MQ, except under `auth` to a caller with no permission on the name, who gets the 403 it
    /// would get if the MQ existed (so that names cannot be probed).
    private func notFound(_ request: Message, name: String, session: Session) -> Message {
        if let policy, MQNameRules.problem(name) == nil {
            let caller = policy.caller(token: request.presentedToken, session: session)
            if caller.grants.permissions(on: name).isEmpty {
                return request.reply(status: 403, body: Self.refusalText(of: request.cmd ?? "this command", name: name, caller: caller))
            }
        }
        return Self.notFound(request, name: name)
    }

    /// The body of the 403 that `cmd` on the MQ `name` gets from `caller`, word for word whether or not the MQ
    /// exists: a caller with no permission on a name must not tell the two apart.
    private static func refusalText(of cmd: String, name: String, caller: Caller) -> String {
        switch cmd {
        case "produce": return refusalText(.produce, name: name, caller: caller)
        case "consume": return refusalText(.consume, name: name, caller: caller)
        case "query_mq": return "MQ(\(name)) forbidden: query_mq needs a permission on '\(name)' (\(caller.label) has none)"
        case "create_mq", "remove_mq", "add_key", "remove_key":
            return "MQ(\(name)) forbidden: \(cmd) needs the admin permission on '\(name)' (\(caller.label) lacks it)"
        default: return "MQ(\(name)) forbidden: \(cmd) needs a permission on '\(name)' (\(caller.label) has none)"
        }
    }

    /// The body of the 403 for a produce or consume (`need`) that `caller` may not make on the MQ `name`.
    private static func refusalText(_ need: Permissions, name: String, caller: Caller) -> String {
        "MQ(\(name)) forbidden: \(need.name) needs the \(need.name) permission on '\(name)' (\(caller.label) lacks it)"
    }

    private static func badFormat(_ request: Message, _ detail: String) -> Message {
        request.reply(status: 400, body: "Bad format: \(detail)", includeMq: false)
    }

    private func registerTokenValid(_ request: Message) -> Bool {
        (request.headers[HeaderName.registerToken] ?? "") == settings.registerToken
    }

    // MARK: - Access control

    /// Why the request may not `produce` or `consume` on `queue` under `auth`, or `nil` when it may: the MQ's own
    /// `access_token` (as in zbus 6.3), or the permission granted to the presented token on the MQ's name.
    @inline(__always)
    private func refusal(_ need: Permissions, token: String?, queue: MessageQueue, policy: AccessPolicy,
                         session: Session) -> String? {
        if !queue.accessToken.isEmpty, token == queue.accessToken { return nil }
        if policy.permissions(token: token, on: queue.name, session: session).isSuperset(of: need) { return nil }
        return refusalSlowly(need, queue: queue, token: token, policy: policy, session: session)
    }

    @inline(never)
    private func refusalSlowly(_ need: Permissions, queue: MessageQueue, token: String?, policy: AccessPolicy,
                               session: Session) -> String {
        let caller = policy.caller(token: token, session: session)
        logger.info("request refused", metadata: ["mq": "\(queue.name)", "need": "\(need)", "caller": "\(caller.label)", "session": "\(session.id)"])
        return Self.refusalText(need, name: queue.name, caller: caller)
    }

    /// The token a request presents for an MQ's own `access_token` on an admin command: `token`, or else
    /// `access_token` (the header `create_mq` sets it with).
    private static func accessTokenPresented(_ request: Message) -> String? {
        request.presentedToken ?? request.headers[HeaderName.accessToken]
    }

    /// Why the request may not run the admin command `cmd` on the MQ `name`, or `nil` when it may.
    ///
    /// Without `auth`: the `register_token` (checked by the caller first, as zbus 6.3 did), and the MQ's
    /// `access_token` where it has one (zbus 6.3 let anyone with the register token remove a protected MQ, and the
    /// default register token is empty). With `auth`: the admin permission on the name, or a configured (non-empty)
    /// `register_token` together with the MQ's `access_token`.
    private func adminRefusal(_ cmd: String, _ request: Message, name: String, accessToken: String?,
                              session: Session) -> String? {
        let presented = Self.accessTokenPresented(request)
        let holdsAccessToken = (accessToken ?? "").isEmpty || presented == accessToken
        guard let policy else {
            if holdsAccessToken { return nil }
            logger.info("request refused: the MQ's access token is missing", metadata: ["cmd": "\(cmd)", "mq": "\(name)", "session": "\(session.id)"])
            return "MQ(\(name)) forbidden: \(cmd) needs the MQ's access token (in the token header)"
        }
        if policy.permissions(token: request.presentedToken, on: name, session: session).contains(.admin) { return nil }
        if !settings.registerToken.isEmpty, registerTokenValid(request), holdsAccessToken { return nil }
        let caller = policy.caller(token: request.presentedToken, session: session)
        logger.info("request refused", metadata: ["cmd": "\(cmd)", "mq": "\(name)", "need": "admin", "caller": "\(caller.label)", "session": "\(session.id)"])
        return Self.refusalText(of: cmd, name: name, caller: caller)
    }

    /// Whether the caller may see the MQ `name`'s counts and creator (`query_mq`, `data`, the monitor): the MQ has
    /// no access token and `auth` is off, or the caller presents the MQ's access token, or `auth` grants it any
    /// permission on the MQ. `session` caches the decision when given (on its event loop).
    func mayRead(name: String, accessToken: String, token: String?, session: Session?) -> Bool {
        if !accessToken.isEmpty, token == accessToken { return true }
        guard let policy else { return accessToken.isEmpty }
        if let session { return !policy.permissions(token: token, on: name, session: session).isEmpty }
        return !policy.caller(token: token).grants.permissions(on: name).isEmpty
    }

    /// Whether a caller presenting `token` (off any session: the monitor) may see the MQ `name`.
    func mayRead(named name: String, token: String?) -> Bool {
        let accessToken = state.withLockedValue { $0.queues[name]?.accessToken ?? $0.unopened[name]?.accessToken } ?? ""
        return mayRead(name: name, accessToken: accessToken, token: token, session: nil)
    }

    private func readRefusal(_ name: String, _ request: Message, session: Session) -> String {
        guard let policy else { return "MQ(\(name)) forbidden: query_mq needs the MQ's access token (in the token header)" }
        return Self.refusalText(of: "query_mq", name: name, caller: policy.caller(token: request.presentedToken, session: session))
    }

    /// Whether a `create_mq` may make its MQ a slave of `master` (which receives a copy of every message): the
    /// master's access token in `master_token` (an empty one matches an MQ without one, as in 6.3); under `auth`, a
    /// non-empty access token or the consume permission on the master, since a slave reads all the master's messages.
    private func mayCopy(from master: MQDefinition, request: Message) -> Bool {
        let masterToken = request.headers[HeaderName.masterToken] ?? ""
        guard let policy else { return master.accessToken == masterToken }
        if !master.accessToken.isEmpty, masterToken == master.accessToken { return true }
        return policy.caller(token: request.presentedToken).grants.permissions(on: master.name).contains(.consume)
    }

    /// Whether `session` may route to `target`: it consumed from an MQ that `target` produced to (and, under `auth`,
    /// may still consume from it), or `auth` grants it admin on every MQ.
    private func routeAllowed(_ request: Message, from session: Session, to target: Session) -> Bool {
        let token = request.presentedToken
        for queue in sessionIndex.queues(of: session) where routeIndex.produced(target, to: queue) {
            guard let policy else { return true }
            if !queue.accessToken.isEmpty, token == queue.accessToken { return true }
            if policy.permissions(token: token, on: queue.name, session: session).contains(.consume) { return true }
        }
        return policy?.caller(token: token, session: session).grants.isAdminEverywhere ?? false
    }

    // MARK: - produce

    func produce(_ request: Message, session: Session) {
        // Each header is looked up once (a lookup is a scan of the header block), and `key_group` only with a `key`.
        let mq = request.mq
        guard let queue = queue(named: mq) ?? lookUpSlowly(mq, request, session, retry: { self.produce(request, session: session) })
        else { return }
        if let policy {
            // Looked up once: without a `token` header it also reads `Authorization` and the request string.
            let token = request.presentedToken
            if let refusal = refusal(.produce, token: token, queue: queue, policy: policy, session: session) {
                return session.send(request.reply(status: 403, body: refusal))
            }
            // A token of the auth section is one client's secret: consumers must not read it in the stored message.
            if token != nil {
                return store(Self.withoutCredentials(request), mq: mq, queue: queue, session: session)
            }
        } else {
            guard (request.token ?? "") == queue.accessToken else {
                return session.send(request.reply(status: 403, body: "MQ(\(queue.name)) forbidden"))
            }
        }
        store(request, mq: mq, queue: queue, session: session)
    }

    /// `request` without what carries credentials (the `token` and `authorization` headers, a `token=` URL parameter).
    @inline(never)
    private static func withoutCredentials(_ request: Message) -> Message {
        var message = request
        message.removeCredentials()
        return message
    }

    /// The part of `produce` after the access check: stores `request` in `queue` and answers.
    @inline(__always)
    private func store(_ request: Message, mq: String?, queue: MessageQueue, session: Session) {
        routeIndex.note(session, producedTo: queue)
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
                if wantsAck { session.send(request.reply(status: 406, body: "MQ(\(queue.name)) duplicate key '\(key ?? "")' in key group '\(request.keyGroup ?? "")'; nothing stored")) }
            case .tooManyKeyGroups(let limit):
                session.send(request.reply(status: 429, body: Self.keyGroupLimitBody(queue.name, limit: limit) + "; nothing stored"))
            case .keyMemory(let limit):
                session.send(request.reply(status: 429, body: Self.keyMemoryLimitBody(limit: limit) + "; nothing stored"))
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
        let found: MessageQueue?
        if let name = request.mq {
            found = queue(named: name)
            if found == nil, let store = state.withLockedValue({ $0.unopened[name] != nil ? $0.store : nil }) {
                // An unopened MQ of the store: opened on the store's thread, then the call is run again.
                return open(name, store: store, on: session.eventLoop) { wake in
                    if case .opened = wake {
                        self.urlCall(request, session: session)
                    } else {
                        session.send(request.reply(status: 400, body: "Bad format: command(null) not support", includeMq: false))
                    }
                }
            }
        } else {
            found = nil
        }
        guard let queue = found, queue.mode.contains(.rpc) else {
            // Under `auth`, an RPC MQ the caller may not produce to answers 403: so do every other name it may not
            // produce to, or a caller without permissions could probe which RPC MQs exist.
            if let policy, let name = request.mq, MQNameRules.problem(name) == nil {
                let token = request.presentedToken
                let holdsAccessToken = found.map { !$0.accessToken.isEmpty && token == $0.accessToken } ?? false
                let caller = policy.caller(token: token, session: session)
                if !holdsAccessToken, !caller.grants.permissions(on: name).contains(.produce) {
                    return session.send(request.reply(status: 403, body: Self.refusalText(.produce, name: name, caller: caller)))
                }
            }
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
        guard let queue = queue(named: request.mq)
            ?? lookUpSlowly(request.mq, request, session, retry: { self.consume(request, session: session) })
        else { return }
        if let policy {
            if let refusal = refusal(.consume, token: request.presentedToken, queue: queue, policy: policy, session: session) {
                return session.send(request.reply(status: 403, body: refusal))
            }
        } else {
            guard (request.token ?? "") == queue.accessToken else {
                return session.send(request.reply(status: 403, body: "MQ(\(queue.name)) forbidden"))
            }
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
                      closeAfterReply: request.closeRequested)
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
        guard (!settings.routeCheck && policy == nil) || routeAllowed(request, from: session, to: target) else {
            let dropped = routeDropped.wrappingIncrementThenLoad(ordering: .relaxed)
            let caller = policy.map { " (\($0.caller(token: request.presentedToken, session: session).label))" } ?? ""
            logger.notice("route refused: the router consumed no message of the recver", metadata: [
                "recver": "\(recver)", "session": "\(session.id)", "dropped": "\(dropped)",
            ])
            let need = policy == nil ? "" : ", or the admin permission on *"
            return session.send(request.reply(status: 403, body: """
                forbidden: route to \(recver) needs a message of it consumed on this connection from an MQ it \
                produced to, with the consume permission there\(need)\(caller)
                """, includeMq: false))
        }
        var message = request
        if policy != nil {
            // The router's token is its own secret, not the receiver's business.
            message.removeCredentials()
        }
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

    /// What a `create_mq` came to.
    private enum CreateOutcome {
        case created
        /// The MQ was there already (answered as a creation, as zbus 6.3 does).
        case existed
        case refused(status: Int, reason: String)
    }

    func createMQ(_ request: Message, session: Session) {
        if policy == nil, !registerTokenValid(request) {
            return session.send(request.reply(status: 403, body: "register_token mismatch", includeMq: false))
        }
        guard let name = request.headers[HeaderName.mqName]?.trimmingCharacters(in: .whitespaces), !name.isEmpty else {
            return session.send(Self.badFormat(request, "Missing mq_name"))
        }
        if let refusal = adminRefusal("create_mq", request, name: name, accessToken: nil, session: session) {
            return session.send(request.reply(status: 403, body: refusal, includeMq: false))
        }
        if let problem = MQNameRules.problem(name) {
            return session.send(Self.badFormat(request, "\(problem): '\(MQNameRules.shown(name))'"))
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
        let shown = MQNameRules.shown(name)
        guard let store = state.withLockedValue({ $0.store }) else {
            return session.send(request.reply(status: 503, body: "MQ(\(shown)) could not be created: the MQ store is closed", includeMq: false))
        }
        // Creating files and syncing directories waits for the disk: done on the store's I/O thread, where creates
        // and removes also run one at a time, in the order they came.
        let creator = request.remoteAddr ?? session.remoteAddress
        store.execute { [self, maxLength] in
            let outcome = create(name, mode: mode == 0 ? MQMode.mq.rawValue : mode, maxLength: maxLength,
                                 creator: creator, request: request, store: store)
            switch outcome {
            case .created, .existed:
                if case .created = outcome { entryObservers.notify(.changed(name)) }
                session.send(request.reply(status: 200, body: Self.timeBody(), includeMq: false))
            case .refused(let status, let reason) where status == 400:
                session.send(request.reply(status: status, body: reason, includeMq: false))
            case .refused(let status, let reason):
                session.send(request.reply(status: status, body: "MQ(\(shown)) could not be created: \(reason)", includeMq: false))
            }
        }
    }

    /// The body of `create_mq`, on the store's I/O thread. The state lock is held only to check and to install, not
    /// while files are created.
    private func create(_ name: String, mode: Int, maxLength: Int64, creator: String, request: Message,
                        store: QueueStore) -> CreateOutcome {
        let shown = MQNameRules.shown(name)
        enum Plan {
            case done(CreateOutcome)
            case create(MQDefinition, masterToOpen: String?)
        }
        let plan = state.withLockedValue { state -> Plan in
            guard state.queues[name] == nil, state.unopened[name] == nil else { return .done(.existed) }
            guard state.store === store else { return .done(.refused(status: 503, reason: "the MQ store is closed")) }
            guard state.mqCount < settings.maxMqs else {
                return .done(.refused(status: 503, reason: "MQ limit reached: \(state.mqCount) MQs (mq.max_mqs)"))
            }
            var definition = MQDefinition(name: name, mode: mode, accessToken: request.headers[HeaderName.accessToken] ?? "",
                                          creator: creator, masterMq: nil, maxLength: maxLength,
                                          createdAt: Clock.milliseconds())
            var masterToOpen: String?
            if let masterName = request.headers[HeaderName.masterMq],
                let master = state.queues[masterName]?.currentDefinition ?? state.unopened[masterName]
            {
                if mayCopy(from: master, request: request) {
                    if let problem = state.links.problem(linking: name, to: masterName, maxDepth: settings.maxMasterDepth) {
                        return .done(.refused(status: 400, reason: "Bad format: \(problem)"))
                    }
                    definition.masterMq = masterName
                    if state.unopened[masterName] != nil { masterToOpen = masterName }
                } else {
                    logger.notice("master_token mismatch; MQ created without a master", metadata: ["mq": "\(shown)", "master": "\(MQNameRules.shown(masterName))"])
                }
            }
            // Refused before the store is touched, so that the node keeps descriptors for connections (and a create
            // never fails half-way for want of one).
            let opening = 1 + (masterToOpen.map { unopenedGroup(of: $0, in: state).count } ?? 0)
            if let refusal = DescriptorBudget.refusal(opening: opening) {
                return .done(.refused(status: 503, reason: refusal))
            }
            return .create(definition, masterToOpen: masterToOpen)
        }
        guard case .create(let definition, let masterToOpen) = plan else {
            if case .done(let outcome) = plan { return outcome }
            return .created
        }
        if let masterToOpen {
            switch openUnopened(masterToOpen) {
            case .opened(let opened): _ = install(opened, for: masterToOpen)
            case .done(.refused(let status, let reason)): return .refused(status: status, reason: reason)
            case .done: break
            }
        }
        let metadata: [UInt8]
        do {
            metadata = Array(try JSONEncoder().encode(definition))
        } catch {
            return .refused(status: 500, reason: "its definition could not be encoded: \(error)")
        }
        let durable: DurableQueue
        do throws(QueueStoreError) {
            durable = try store.open(name: name, metadata: metadata)
        } catch {
            logger.error("create_mq failed", metadata: ["mq": "\(shown)", "error": "\(error)"])
            return .refused(status: Self.status(of: error), reason: "\(error)")
        }
        return state.withLockedValue { state -> CreateOutcome in
            guard state.store === store else { return .refused(status: 503, reason: "the MQ store is closed") }
            state.queues[name] = makeQueue(definition, durable: durable)
            if let master = definition.masterMq { state.links.link(name, to: master) }
            attachLinks(of: [name], state: state)
            publish(state.queues)
            return .created
        }
    }

    func removeMQ(_ request: Message, session: Session) {
        if policy == nil, !registerTokenValid(request) {
            return session.send(request.reply(status: 403, body: "register_token mismatch", includeMq: false))
        }
        guard let name = request.headers[HeaderName.mqName]?.trimmingCharacters(in: .whitespaces), !name.isEmpty else {
            return session.send(Self.badFormat(request, "Missing mq_name"))
        }
        if let problem = MQNameRules.problem(name) {
            return session.send(Self.badFormat(request, "\(problem): '\(MQNameRules.shown(name))'"))
        }
        let (store, accessToken) = state.withLockedValue { ($0.store, $0.queues[name]?.accessToken ?? $0.unopened[name]?.accessToken) }
        if let refusal = adminRefusal("remove_mq", request, name: name, accessToken: accessToken, session: session) {
            return session.send(request.reply(status: 403, body: refusal, includeMq: false))
        }
        guard let store else {
            return session.send(request.reply(status: 404, body: "MQ(\(name)) Not Found", includeMq: false))
        }
        // Deleting files waits for the disk: done on the store's I/O thread, in order with creates.
        store.execute { [self] in remove(name, checkedAccessToken: accessToken, request: request, session: session) }
    }

    /// What the store thread found when it came to remove an MQ.
    private enum RemovalOutcome {
        case removed(MessageQueue?, QueueStore?, [MessageQueue], (any EventLoopGroup)?)
        case notFound
        /// The MQ's access token is not the one the request was checked against: a `create_mq` queued before this
        /// removal made the MQ (or another one of that name) after the check.
        case changed
    }

    /// The body of `remove_mq`, on the store's I/O thread. `checkedAccessToken` is the MQ's access token when the
    /// request was checked (`nil`: there was no MQ).
    private func remove(_ name: String, checkedAccessToken: String?, request: Message, session: Session) {
        let outcome: RemovalOutcome = state.withLockedValue { state in
            let current = state.queues[name]?.accessToken ?? state.unopened[name]?.accessToken
            // The check ran on the connection's event loop while a create of this name could still be waiting here:
            // removing what it made would delete a protected MQ for a caller who never had its token.
            // An MQ without a token (empty) asks nothing more of the caller than no MQ did: only a token that
            // appeared since the check sends the request back to be checked again (after the store's queued work,
            // so that one rare answer may come out of order; an unprotected MQ keeps the pipeline's order).
            guard (current ?? "") == (checkedAccessToken ?? "") else { return .changed }
            let queue = state.queues.removeValue(forKey: name)
            guard queue != nil || state.unopened.removeValue(forKey: name) != nil else { return .notFound }
            state.links.unlink(name)
            state.links.unlinkSlaves(of: name)
            if queue != nil { publish(state.queues) }
            return .removed(queue, state.store, Array(state.queues.values), state.eventLoopGroup)
        }
        let (queue, store, others, group): (MessageQueue?, QueueStore?, [MessageQueue], (any EventLoopGroup)?)
        switch outcome {
        case .removed(let removedQueue, let removedStore, let remaining, let loops):
            (queue, store, others, group) = (removedQueue, removedStore, remaining, loops)
        case .notFound:
            return session.send(request.reply(status: 404, body: "MQ(\(name)) Not Found", includeMq: false))
        case .changed:
            // Checked again, against the MQ as it is now, on the connection's event loop (the session's access cache
            // lives there).
            return session.eventLoop.execute { self.removeMQ(request, session: session) }
        }
        if let queue {
            releaseCachedTables(on: group)
            for other in others { other.detachSlave(named: name) }
            queue.close().send()
        }
        do {
            try store?.remove(name: name)
        } catch {
            logger.error("remove_mq could not delete the files", metadata: ["mq": "\(name)", "error": "\(error)"])
        }
        entryObservers.notify(.removed(name))
        session.send(request.reply(status: 200, body: Self.timeBody(), includeMq: false))
    }

    // MARK: - Tracked entries

    /// Every MQ as a tracker sees it; an unopened MQ reports its definition with no consumers and no count (opening
    /// every MQ of a large store for a report would cost descriptors).
    func trackedEntries() -> [TrackedEntry] {
        let (queues, unopened) = state.withLockedValue { (Array($0.queues.values), Array($0.unopened.values)) }
        return queues.map { $0.trackedEntry() } + unopened.map {
            TrackedEntry(name: $0.name, mode: $0.mode, lastUpdateTime: $0.createdAt, unconsumedCount: 0, consumerCount: 0)
        }
    }

    /// The MQ `name` as a tracker sees it, or `nil` when there is none.
    func trackedEntry(named name: String) -> TrackedEntry? {
        let (queue, definition) = state.withLockedValue { ($0.queues[name], $0.unopened[name]) }
        if let queue { return queue.trackedEntry() }
        return definition.map {
            TrackedEntry(name: $0.name, mode: $0.mode, lastUpdateTime: $0.createdAt, unconsumedCount: 0, consumerCount: 0)
        }
    }

    // MARK: - query_mq / data

    func queryMQ(_ request: Message, session: Session) {
        guard let name = request.mq else { return data(request, session: session) }
        guard let queue = queue(named: name)
            ?? lookUpSlowly(name, request, session, retry: { self.queryMQ(request, session: session) })
        else { return }
        guard mayRead(name: queue.name, accessToken: queue.accessToken, token: request.presentedToken, session: session) else {
            return session.send(request.reply(status: 403, body: readRefusal(queue.name, request, session: session)))
        }
        session.send(json(request, queue.info(includeConsumers: true)))
    }

    func data(_ request: Message, session: Session) {
        let (queues, unopened, address) = state.withLockedValue { (Array($0.queues.values), Array($0.unopened.values), $0.serverAddress) }
        var table: [String: JSONValue] = [:]
        let token = request.presentedToken
        // Only the MQs the caller could query: a protected MQ's counts and creator are its owners' business.
        for queue in queues where mayRead(name: queue.name, accessToken: queue.accessToken, token: token, session: session) {
            table[queue.name] = queue.info(includeConsumers: false)
        }
        // An unopened MQ has no consumers and its counts are not known without opening it (which `data` must not
        // do for every MQ of a large store); `opened: false` says so.
        for definition in unopened where mayRead(name: definition.name, accessToken: definition.accessToken, token: token, session: session) {
            var object: [String: JSONValue] = [
                "name": .string(definition.name), "mode": .int(Int64(definition.mode)), "creator": .string(definition.creator),
                "consumerCount": .int(0), "consumerInfoList": .array([]), "lastUpdateTime": .int(definition.createdAt),
                "opened": .bool(false),
            ]
            if definition.maxLength > 0 { object["maxLength"] = .int(definition.maxLength) }
            if let master = definition.masterMq { object["masterMq"] = .string(master) }
            table[definition.name] = .object(object)
        }
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

    // MARK: - Statistics

    /// Samples every open MQ's counters: run once a second on an event loop (a lock taken per MQ, nothing per message).
    private func sampleQueues() {
        let queues = table.load(ordering: .acquiring).queues.values
        let now = NIODeadline.now()
        let wallClock = Clock.milliseconds()
        for queue in queues { queue.sample(now: now, wallClock: wallClock) }
    }

    /// Every MQ's counts, sorted by name; an MQ of the store not opened yet shows its definition with zero counts.
    func queueStatistics() -> [QueueStatistics] {
        let (queues, unopened) = state.withLockedValue { (Array($0.queues.values), Array($0.unopened.values)) }
        var all = queues.map { $0.statistics() }
        for definition in unopened {
            all.append(QueueStatistics(
                name: definition.name, mode: definition.mode, modeDescription: MessageQueue.describe(definition.modeBits),
                depth: 0, consumers: 0, inFlight: 0, produced: 0, consumed: 0, redelivered: 0, produceRate: 0,
                consumeRate: 0, lastActivity: definition.createdAt, isOpen: false))
        }
        return all.sorted { $0.name < $1.name }
    }

    /// One MQ in detail (not opened if it is not open yet: a look must not change what the node holds open).
    func queueDetail(named name: String) -> QueueDetail? {
        if let queue = queue(named: name) { return queue.detail(wallClock: Clock.milliseconds()) }
        return queueStatistics().first { $0.name == name && !$0.isOpen }.map { statistics in
            let definition = state.withLockedValue { $0.unopened[name] }
            return QueueDetail(statistics: statistics, consumers: [], oldestWaitingAge: nil, topics: [],
                               creator: definition?.creator ?? "", masterMq: definition?.masterMq)
        }
    }

    /// The bytes of the MQ store's files (reads the directory: called off the event loops).
    func storeBytes() -> Int64 {
        let directory = node.store.hasSuffix("/") ? node.store + "mq" : node.store + "/mq"
        guard let files = FileManager.default.enumerator(at: URL(fileURLWithPath: directory),
                                                         includingPropertiesForKeys: [.fileSizeKey]) else { return 0 }
        var total: Int64 = 0
        for case let url as URL in files {
            total += Int64((try? url.resourceValues(forKeys: [.fileSizeKey]).fileSize) ?? 0)
        }
        return total
    }

    // MARK: - add_key / remove_key

    func addKey(_ request: Message, session: Session) {
        keyCommand(request, session: session) { filter, key, group in
            guard let key else { return 0 }
            switch filter.add(key, group: group) {
            case .added: return 1
            case .duplicate: return 0
            case .tooManyGroups, .outOfMemory: return nil
            }
        }
    }

    /// The refusal of a key in a new key group beyond `max_key_groups`.
    private static func keyGroupLimitBody(_ queue: String, limit: Int) -> String {
        "MQ(\(queue)) key group limit reached: \(limit) key groups (mq.max_key_groups)"
    }

    private static func keyMemoryLimitBody(limit: Int) -> String {
        "key memory limit reached: the node's dedupe keys hold \(limit) bytes (mq.max_key_bytes)"
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
    private func keyCommand(_ request: Message, session: Session,
                            _ body: @escaping @Sendable (inout KeyFilter, String?, String) -> Int?) {
        if policy == nil, !registerTokenValid(request) {
            return session.send(request.reply(status: 403, body: "register_token mismatch"))
        }
        guard let queue = queue(named: request.mq)
            ?? lookUpSlowly(request.mq, request, session, retry: { self.keyCommand(request, session: session, body) })
        else { return }
        if let refusal = adminRefusal(request.cmd ?? "add_key", request, name: queue.name, accessToken: queue.accessToken, session: session) {
            return session.send(request.reply(status: 403, body: refusal))
        }
        let group = request.keyGroup ?? ""
        let (count, refusal) = queue.withKeyFilter { filter -> (Int?, String) in
            guard let count = body(&filter, request.key, group) else {
                // Refused: a new group beyond max_key_groups, or no room left in max_key_bytes.
                return (nil, filter.admits(group: group)
                    ? Self.keyMemoryLimitBody(limit: filter.budget?.limit ?? 0)
                    : Self.keyGroupLimitBody(queue.name, limit: filter.maxGroups))
            }
            return (count, "")
        }
        guard let count else { return session.send(request.reply(status: 429, body: refusal)) }
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
