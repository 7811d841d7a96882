import Atomics
import NIOConcurrencyHelpers
import NIOCore

/// How a session's messages leave the node: a TCP channel, or an in-process peer.
public protocol SessionTransport: Sendable {
    /// The event loop the session's state lives on.
    var eventLoop: any EventLoop { get }
    /// Queues `message` for writing; called on ``eventLoop``.
    func write(_ message: Message)
    /// Queues `outgoing` for writing; called on ``eventLoop``. Transports that frame bytes write acknowledgements and
    /// deliveries without building a ``Message``; the default writes ``Outgoing/message``.
    func write(_ outgoing: Outgoing)
    /// Writes out what was queued; called on ``eventLoop``.
    func flush()
    /// Closes the connection after what was written; called on ``eventLoop``.
    func close()
    /// The bytes read from and written to the connection so far; called on ``eventLoop``.
    var traffic: SessionTraffic { get }
    /// Whether ``flush()`` does anything: a transport that hands each message over as it is written (in-process)
    /// says `false`, and the session then schedules no flush for it.
    var needsFlush: Bool { get }
}

/// Bytes a connection carried, in each direction.
public struct SessionTraffic: Sendable, Equatable {
    /// Bytes read from the peer.
    public var read: UInt64
    /// Bytes written to the peer.
    public var written: UInt64

    /// Creates a count.
    public init(read: UInt64 = 0, written: UInt64 = 0) {
        self.read = read
        self.written = written
    }

    static func + (left: SessionTraffic, right: SessionTraffic) -> SessionTraffic {
        SessionTraffic(read: left.read &+ right.read, written: left.written &+ right.written)
    }
}

extension SessionTransport {
    /// No bytes: a transport that frames nothing (in-process) carries none.
    public var traffic: SessionTraffic { SessionTraffic() }

    /// `true`: writes wait for a flush.
    public var needsFlush: Bool { true }

    /// Writes `outgoing` as a ``Message``.
    public func write(_ outgoing: Outgoing) {
        write(outgoing.message)
    }
}

/// One client connection: its id, its peer address, and the way back to it.
///
/// A session's id (a UUID) is the `sender` stamped on everything the client sends and the `recver` a `route` names.
/// ``send(_:)`` may be called from any thread. Replies written while the node is handling a read batch are flushed
/// once at the end of the batch, and messages sent from tasks once at the end of the loop tick, so a pipelining
/// client gets one write for many replies.
public final class Session: @unchecked Sendable {
    /// The session id (lower-case UUID).
    public let id: String
    /// The peer address as `ip:port`.
    public let remoteAddress: String
    /// The event loop the session lives on.
    public let eventLoop: any EventLoop
    /// Whether the session is the process's own code (a module or an embedding program, connected in-process), which
    /// acts with every permission under an `auth` section: it holds the node's configuration already.
    public let isTrusted: Bool

    private let transport: any SessionTransport
    /// The transport's ``SessionTransport/needsFlush``, read once.
    private let transportNeedsFlush: Bool
    private let active = ManagedAtomic(true)
    // Confined to `eventLoop`:
    /// Flushes wait for the end of the current read batch or send batch (see ``beginSendBatch()``).
    private var flushesHeld = false
    private var flushPending = false
    private var closeAfterReply = false
    /// The last access decision (``AccessPolicy``), confined to ``eventLoop``.
    public var accessCache = SessionAccessCache()
    /// A mark the MQ module keeps of the last MQ this session produced to (so that noting it for `route` costs one
    /// comparison per produce); confined to ``eventLoop``, 0 until the first produce.
    public var lastProducedMark: UInt64 = 0

    /// Creates a session over `transport`; `trusted` for the process's own in-process sessions (see ``isTrusted``).
    public init(id: String, remoteAddress: String, transport: any SessionTransport, trusted: Bool = false) {
        self.id = id
        self.isTrusted = trusted
        self.remoteAddress = remoteAddress
        self.transport = transport
        self.transportNeedsFlush = transport.needsFlush
        self.eventLoop = transport.eventLoop
    }

    /// The bytes the connection carried so far, read on its event loop.
    public func traffic() -> EventLoopFuture<SessionTraffic> {
        let transport = self.transport
        return eventLoop.submit { transport.traffic }
    }

    /// ``traffic()`` when already on ``eventLoop``.
    var trafficOnLoop: SessionTraffic { transport.traffic }

    /// Whether the connection is still open.
    public var isActive: Bool { active.load(ordering: .relaxed) }

    /// Sends `message` to the client. Safe from any thread; a message sent to a closed session is dropped.
    public func send(_ message: Message) {
        send(.message(message))
    }

    /// Sends `outgoing` to the client (an acknowledgement or a delivery costs less this way than as a ``Message``,
    /// for the same bytes). Safe from any thread; dropped when the session is closed.
    public func send(_ outgoing: Outgoing) {
        if eventLoop.inEventLoop {
            sendOnLoop(outgoing)
        } else {
            eventLoop.execute { self.sendOnLoop(outgoing) }
        }
    }

    /// Closes the connection after what was already sent.
    public func close() {
        if eventLoop.inEventLoop {
            transport.close()
        } else {
            eventLoop.execute { self.transport.close() }
        }
    }

    private func sendOnLoop(_ outgoing: Outgoing) {
        guard isActive else { return }
        if closeAfterReply {
            transport.write(outgoing.closing)
            transport.flush()
            transport.close()
            markClosed()
            return
        }
        transport.write(outgoing)
        if transportNeedsFlush { scheduleFlush() }
    }

    private func scheduleFlush() {
        guard !flushPending else { return }
        flushPending = true
        if !flushesHeld {
            // Sent from a task (an acknowledgement, a delivery): flush once at the end of this loop tick, so that
            // everything the tick sends to this client leaves in one write.
            eventLoop.execute { self.flushIfPending() }
        }
    }

    private func flushIfPending() {
        guard flushPending else { return }
        flushPending = false
        transport.flush()
    }

    // MARK: - Kernel hooks (event loop only)

    /// Marks the start of a batch of reads: replies are held until ``endReadBatch()``.
    func beginReadBatch() { flushesHeld = true }

    /// Ends a read batch and flushes replies written during it.
    func endReadBatch() {
        flushesHeld = false
        if flushPending {
            flushPending = false
            transport.flush()
        }
    }

    /// Holds the flushes of what is sent to this session until ``endSendBatch()``, for code on the session's event loop
    /// that sends to many sessions in one go (a stored batch's acknowledgements): one write per session at the end
    /// instead of a flush scheduled for each.
    ///
    /// - Returns: `false` (and holds nothing) off the session's loop or when its sends are already held; call
    ///   ``endSendBatch()`` only after `true`.
    public func beginSendBatch() -> Bool {
        guard eventLoop.inEventLoop, !flushesHeld else { return false }
        flushesHeld = true
        return true
    }

    /// Ends what ``beginSendBatch()`` began and flushes what was sent meanwhile.
    public func endSendBatch() { endReadBatch() }

    /// Makes the next message sent to the client the last one on this connection (HTTP/1.0, `Connection: close`).
    func closeAfterNextReply() { closeAfterReply = true }

    /// Whether the connection is being closed after a reply, so further requests are ignored.
    var isClosingAfterReply: Bool { closeAfterReply }

    /// Records that the connection is gone.
    func markClosed() { active.store(false, ordering: .relaxed) }
}

/// The node's open sessions by id, for `route` and for modules that address a session by id.
public final class SessionRegistry: Sendable {
    private let sessions = NIOLockedValueBox<[String: Session]>([:])
    /// What the closed sessions carried (added as each closes, under the lock its removal takes anyway).
    private let closedTraffic = NIOLockedValueBox(SessionTraffic())

    /// Creates an empty registry.
    public init() {}

    /// The open session with `id`, if any.
    public func session(id: String) -> Session? { sessions.withLockedValue { $0[id] } }

    /// Number of open sessions.
    public var count: Int { sessions.withLockedValue { $0.count } }

    /// Every open session (a snapshot).
    public var all: [Session] { sessions.withLockedValue { Array($0.values) } }

    func add(_ session: Session) { sessions.withLockedValue { $0[session.id] = session } }

    /// Removes a closing session; called on its event loop, where its byte counts are final.
    func remove(_ session: Session) {
        let carried = session.eventLoop.inEventLoop ? session.trafficOnLoop : SessionTraffic()
        sessions.withLockedValue { sessions in
            guard sessions.removeValue(forKey: session.id) != nil else { return }
            closedTraffic.withLockedValue { $0 = $0 + carried }
        }
    }

    /// The bytes every session carried since the node started, the open ones read on their event loops; completes on
    /// `eventLoop`. A session that closes while it is read may be missing from this one answer (its bytes come with
    /// the next), never counted twice: the closed sessions are read before the open ones, and a session leaves the open
    /// ones and joins the closed ones at once.
    public func traffic(on eventLoop: any EventLoop) -> EventLoopFuture<SessionTraffic> {
        let closed = closedTraffic.withLockedValue { $0 }
        let open = all
        return EventLoopFuture.reduce(closed, open.map { $0.traffic() }, on: eventLoop, +)
    }
}
