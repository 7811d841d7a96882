import Logging
import NIOCore
import NIOPosix
import ZbusTLS

/// One reporting connection from this node to one tracker, confined to one event loop.
///
/// On connecting it sends `server_join` and an `entry_update` per entry; then an `entry_update` for each change and
/// for every entry each refresh interval, `entry_remove` for each removal, and `server_leave` at a graceful stop. A
/// lost connection is retried with a backoff, by timers on the loop (nothing waits). While the tracker does not read,
/// reports are skipped rather than queued: the next refresh carries the state anyway, so the outbound buffer stays
/// within the channel's write watermarks.
final class TrackerLink: @unchecked Sendable {
    let tracker: HostAndPort
    let loop: any EventLoop
    private let server: String
    /// The token presented with each report (`auth.report_token`, read at each report so that a reload of the `auth`
    /// section reaches it), for a tracker with access control.
    private let token: @Sendable () -> String?
    private let sources: [any TrackedEntrySource]
    private let refreshInterval: TimeAmount
    private let limits: MessageLimits
    /// Wraps the connection in TLS (`node.tls.client`), or `nil` for plain TCP.
    private let tls: ClientTLS?
    private let logger: Logger

    // Confined to `loop`:
    private var state: TrackerLinkState
    private var channel: (any Channel)?
    private var refresh: RepeatedTask?
    private var retry: Scheduled<Void>?
    /// Changes heard since the last flush of changes, sent together at the end of the loop tick.
    private var pendingChanges: [String: TrackedEntryChange] = [:]
    private var flushScheduled = false
    private var reportedFailure = false

    init(tracker: HostAndPort, server: String, sources: [any TrackedEntrySource], loop: any EventLoop, backoff: Backoff,
         refreshInterval: TimeAmount, limits: MessageLimits, tls: ClientTLS? = nil, logger: Logger,
         token: @escaping @Sendable () -> String? = { nil }) {
        self.token = token
        self.tracker = tracker
        self.server = server
        self.sources = sources
        self.loop = loop
        self.state = TrackerLinkState(backoff: backoff)
        self.refreshInterval = refreshInterval
        self.limits = limits
        self.tls = tls
        var logger = logger
        logger[metadataKey: "tracker"] = "\(tracker)"
        self.logger = logger
    }

    // MARK: - Events (any thread)

    func start() {
        loop.execute { self.perform(self.state.start()) }
    }

    /// A source's entry changed: reported at the end of this loop tick (several changes of one tick, one report).
    func changed(_ change: TrackedEntryChange) {
        loop.execute {
            switch change {
            case .changed(let name), .removed(let name): self.pendingChanges[name] = change
            }
            guard !self.flushScheduled else { return }
            self.flushScheduled = true
            self.loop.execute { self.flushChanges() }
        }
    }

    /// Sends `server_leave` if connected and closes; the future completes once the connection is closed.
    func stop() -> EventLoopFuture<Void> {
        loop.flatSubmit {
            let action = self.state.stop()
            self.retry?.cancel()
            self.retry = nil
            self.refresh?.cancel()
            self.refresh = nil
            guard let channel = self.channel else { return self.loop.makeSucceededVoidFuture() }
            self.channel = nil
            guard action == .leave else {
                channel.close(promise: nil)
                return channel.closeFuture
            }
            self.logger.info("leaving the tracker")
            // Closed once the goodbye is written (a close right away could drop it with a partial write).
            channel.writeAndFlush(self.message(TrackerCommand.serverLeave, server: self.server)).whenComplete { _ in
                channel.close(promise: nil)
            }
            return channel.closeFuture
        }
    }

    // MARK: - Actions (on the loop)

    private func perform(_ action: TrackerLinkState.Action) {
        switch action {
        case .none:
            break
        case .connect:
            connect()
        case .announce:
            announce()
        case .retry(_, let attempt):
            retry = loop.scheduleTask(in: state.backoff.randomizedDelay(attempt: attempt).timeAmount) {
                self.retry = nil
                self.perform(self.state.retryDue())
            }
        case .leave, .close:
            channel?.close(promise: nil)
        }
    }

    private func connect() {
        let limits = self.limits
        let logger = self.logger
        let tls = self.tls
        let host = tracker.host
        ClientBootstrap(group: loop)
            .connectTimeout(.seconds(2))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try tls?.addHandler(to: channel, host: host)
                    try channel.pipeline.syncOperations.addHandler(MessageEncoder())
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(MessageDecoder(limits: limits)))
                    try channel.pipeline.syncOperations.addHandler(TrackerReplyLogger(logger: logger))
                }
            }
            .connect(host: tracker.host, port: tracker.port)
            .hop(to: loop)
            .whenComplete { result in
                switch result {
                case .success(let channel):
                    self.channel = channel
                    channel.closeFuture.hop(to: self.loop).whenComplete { _ in self.connectionClosed(channel) }
                    let action = self.state.connected()
                    if action == .close { self.channel = nil }
                    self.perform(action)
                    if action == .close { channel.close(promise: nil) }
                case .failure(let error):
                    if !self.reportedFailure {
                        self.reportedFailure = true
                        self.logger.warning("cannot reach the tracker; retrying with a backoff", metadata: [
                            "error": "\(error)", "backoff": "\(self.state.backoff)",
                        ])
                    }
                    self.perform(self.state.connectFailed())
                }
            }
    }

    private func connectionClosed(_ closed: any Channel) {
        guard channel === closed else { return }
        channel = nil
        refresh?.cancel()
        refresh = nil
        logger.warning("lost the tracker; reconnecting")
        perform(state.disconnected())
    }

    private func announce() {
        guard let channel else { return }
        reportedFailure = false
        logger.info("reporting to the tracker", metadata: ["server": "\(server)"])
        pendingChanges = [:]
        channel.write(message(TrackerCommand.serverJoin, server: server), promise: nil)
        writeAllEntries(to: channel)
        channel.flush()
        refresh = loop.scheduleRepeatedTask(initialDelay: refreshInterval, delay: refreshInterval) { _ in
            self.refreshAll()
        }
    }

    /// Every entry again: keeps the tracker's copy from expiring, and carries load figures. With no entry,
    /// `server_join` again: the tracker then knows this node is alive (one that stops reporting expires, as a hung
    /// node should), and the connection is not closed as idle.
    private func refreshAll() {
        guard let channel else { return }
        state.lasted()
        guard channel.isWritable else {
            logger.debug("the tracker is not reading; refresh skipped")
            return
        }
        if writeAllEntries(to: channel) == 0 { channel.write(message(TrackerCommand.serverJoin, server: server), promise: nil) }
        channel.flush()
    }

    @discardableResult
    private func writeAllEntries(to channel: any Channel) -> Int {
        var count = 0
        for source in sources {
            for entry in source.trackedEntries() {
                channel.write(update(entry), promise: nil)
                count += 1
            }
        }
        return count
    }

    private func flushChanges() {
        flushScheduled = false
        let changes = pendingChanges
        pendingChanges = [:]
        // Not connected: the announcement on connecting carries the state. Not writable: the next refresh does.
        guard let channel, state.phase == .connected, channel.isWritable else { return }
        for (name, change) in changes.sorted(by: { $0.key < $1.key }) {
            if case .changed = change, let entry = sources.lazy.compactMap({ $0.trackedEntry(named: name) }).first {
                channel.write(update(entry), promise: nil)
            } else if sources.allSatisfy({ $0.trackedEntry(named: name) == nil }) {
                var message = message(TrackerCommand.entryRemove, server: server)
                message.body = ByteBuffer(string: name)
                channel.write(message, promise: nil)
            }
        }
        channel.flush()
    }

    private func update(_ entry: TrackedEntry) -> Message {
        var message = message(TrackerCommand.entryUpdate)
        message.body = ByteBuffer(string: entry.trackerEntry(server: server).line)
        return message
    }

    private func message(_ cmd: String, server: String? = nil) -> Message {
        var message = Message(method: "GET", uri: "/")
        message.cmd = cmd
        message.server = server
        if let token = token() { message.token = token }
        return message
    }
}

/// Reports are one-way; a tracker answers only to refuse one, which is logged (a refusal repeats every refresh, so
/// after the first of a kind at warning level, the rest at debug).
private final class TrackerReplyLogger: ChannelInboundHandler {
    typealias InboundIn = Message

    private let logger: Logger
    private var warned: Set<Int> = []

    init(logger: Logger) {
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let message = unwrapInboundIn(data)
        guard let status = message.status, status >= 400 else { return }
        let level: Logger.Level = warned.insert(status).inserted ? .warning : .debug
        logger.log(level: level, "the tracker refused a report", metadata: ["status": "\(status)", "reason": "\(message.bodyString)"])
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("tracker connection error", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }
}
