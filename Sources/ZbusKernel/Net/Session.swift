import Atomics
import NIOConcurrencyHelpers
import NIOCore

/// How a session's messages leave the node: a TCP channel, or an in-process peer.
public protocol SessionTransport: Sendable {
    /// The event loop the session's state lives on.
    var eventLoop: any EventLoop { get }
    /// Queues `message` for writing; called on ``eventLoop``.
    func write(_ message: Message)
    /// Writes out what was queued; called on ``eventLoop``.
    func flush()
    /// Closes the connection after what was written; called on ``eventLoop``.
    func close()
    /// Queues the acknowledgement of a produce: `200`, `mq`, `id` and `time` (milliseconds) as body; called on
    /// ``eventLoop``. Transports that frame bytes write it without building a ``Message``.
    func writeAcknowledgement(id: String?, mq: String?, time: Int64)
    /// Queues the delivery of a stored record to a consumer (see ``StoredDelivery``); called on ``eventLoop``.
    /// Transports that frame bytes write it without building a ``Message``.
    func writeDelivery(record: ByteBuffer, requestId: String?, close: Bool)
}

extension SessionTransport {
    /// Writes the acknowledgement as a ``Message``.
    public func writeAcknowledgement(id: String?, mq: String?, time: Int64) {
        write(Message.reply(status: 200, body: String(time), id: id, mq: mq))
    }

    /// Parses the record and writes its delivery as a ``Message``.
    public func writeDelivery(record: ByteBuffer, requestId: String?, close: Bool) {
        write(StoredDelivery.message(record: record, requestId: requestId, close: close))
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

    private let transport: any SessionTransport
    private let active = ManagedAtomic(true)
    // Confined to `eventLoop`:
    private var inReadBatch = false
    private var flushPending = false
    private var closeAfterReply = false

    /// Creates a session over `transport`.
    public init(id: String, remoteAddress: String, transport: any SessionTransport) {
        self.id = id
        self.remoteAddress = remoteAddress
        self.transport = transport
        self.eventLoop = transport.eventLoop
    }

    /// Whether the connection is still open.
    public var isActive: Bool { active.load(ordering: .relaxed) }

    /// Sends `message` to the client. Safe from any thread; a message sent to a closed session is dropped.
    public func send(_ message: Message) {
        if eventLoop.inEventLoop {
            sendOnLoop(message)
        } else {
            eventLoop.execute { self.sendOnLoop(message) }
        }
    }

    /// Sends the acknowledgement of a produce (`200`, the request's `id` and `mq`, the node's time in milliseconds as
    /// body): the same bytes as `send(Message.reply(status: 200, body: String(time), id: id, mq: mq))`, cheaper.
    public func sendAcknowledgement(id: String?, mq: String?, time: Int64) {
        if eventLoop.inEventLoop {
            acknowledgeOnLoop(id: id, mq: mq, time: time)
        } else {
            eventLoop.execute { self.acknowledgeOnLoop(id: id, mq: mq, time: time) }
        }
    }

    /// Sends a stored record to a consumer as its delivery (see ``StoredDelivery``): the same bytes as sending the
    /// parsed message `delivered(requestId:close:)`, without parsing it.
    public func sendDelivery(record: ByteBuffer, requestId: String?, close: Bool) {
        if eventLoop.inEventLoop {
            deliverOnLoop(record: record, requestId: requestId, close: close)
        } else {
            eventLoop.execute { self.deliverOnLoop(record: record, requestId: requestId, close: close) }
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

    private func acknowledgeOnLoop(id: String?, mq: String?, time: Int64) {
        guard isActive else { return }
        // The last reply on a closing connection carries `connection: close`: the general path writes it.
        if closeAfterReply { return sendOnLoop(Message.reply(status: 200, body: String(time), id: id, mq: mq)) }
        transport.writeAcknowledgement(id: id, mq: mq, time: time)
        scheduleFlush()
    }

    private func deliverOnLoop(record: ByteBuffer, requestId: String?, close: Bool) {
        guard isActive else { return }
        if closeAfterReply {
            transport.writeDelivery(record: record, requestId: requestId, close: true)
            transport.flush()
            transport.close()
            markClosed()
            return
        }
        transport.writeDelivery(record: record, requestId: requestId, close: close)
        scheduleFlush()
    }

    private func sendOnLoop(_ message: Message) {
        guard isActive else { return }
        var message = message
        if closeAfterReply {
            message.closeRequested = true
            transport.write(message)
            transport.flush()
            transport.close()
            markClosed()
            return
        }
        transport.write(message)
        scheduleFlush()
    }

    private func scheduleFlush() {
        guard !flushPending else { return }
        flushPending = true
        if !inReadBatch {
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
    func beginReadBatch() { inReadBatch = true }

    /// Ends a read batch and flushes replies written during it.
    func endReadBatch() {
        inReadBatch = false
        if flushPending {
            flushPending = false
            transport.flush()
        }
    }

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

    /// Creates an empty registry.
    public init() {}

    /// The open session with `id`, if any.
    public func session(id: String) -> Session? { sessions.withLockedValue { $0[id] } }

    /// Number of open sessions.
    public var count: Int { sessions.withLockedValue { $0.count } }

    /// Every open session (a snapshot).
    public var all: [Session] { sessions.withLockedValue { Array($0.values) } }

    func add(_ session: Session) { sessions.withLockedValue { $0[session.id] = session } }

    func remove(_ session: Session) { sessions.withLockedValue { _ = $0.removeValue(forKey: session.id) } }
}
