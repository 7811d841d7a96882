import NIOConcurrencyHelpers
import NIOCore

/// What a running node lends to in-process connections: its event loops, its dispatcher and its session hooks.
struct InProcessEndpoints: Sendable {
    let eventLoopGroup: any EventLoopGroup
    let dispatcher: CommandDispatcher
    let hooks: ConnectionHooks
}

/// Why an in-process connection could not be opened.
public enum InProcessConnectionError: Error, Sendable, CustomStringConvertible {
    /// The node has not been started, or has been shut down.
    case nodeNotRunning(node: String)

    /// What went wrong and what to do.
    public var description: String {
        switch self {
        case .nodeNotRunning(let node):
            return "node '\(node)' is not running: start it (`try await node.start()`) before connecting in-process"
        }
    }
}

extension Node {
    /// The `remote-addr` the node stamps on messages of in-process connections.
    public static let inProcessRemoteAddress = "in-process"

    /// Opens a session on this running node without a socket, for code in the same process (an embedded node's
    /// clients).
    ///
    /// The session behaves like a TCP connection's: it gets a session id (stamped as `sender`), appears in
    /// ``sessions`` (so `route` can reach it), its messages go through the node's dispatcher in the order sent, and when
    /// it closes the modules are told (`sessionDidClose`), so what it held (in-flight messages, parked consumes) is
    /// released exactly as for a dropped socket.
    ///
    /// - Parameters:
    ///   - remoteAddress: the `remote-addr` stamped on the session's messages.
    ///   - onMessage: called with every message the node sends to the session, in order, on one of the node's event
    ///     loops; it must not block.
    ///   - onClose: called once when the session closes, whoever closed it (``InProcessConnection/close()``, a reply
    ///     that asked to close, or the node shutting down).
    /// - Returns: the open connection.
    /// - Throws: ``InProcessConnectionError/nodeNotRunning(node:)`` when the node is not running.
    public func connectInProcess(
        remoteAddress: String = Node.inProcessRemoteAddress,
        onMessage: @escaping @Sendable (Message) -> Void,
        onClose: @escaping @Sendable () -> Void = {}
    ) throws(InProcessConnectionError) -> InProcessConnection {
        guard let endpoints = inProcessEndpoints else { throw .nodeNotRunning(node: config.name) }
        let eventLoop = endpoints.eventLoopGroup.next()
        let transport = InProcessTransport(eventLoop: eventLoop, hooks: endpoints.hooks, onMessage: onMessage, onClose: onClose)
        var generator = SystemRandomNumberGenerator()
        // The process's own code: trusted under `auth` (``Session/isTrusted``).
        let session = Session(id: SessionId.random(using: &generator), remoteAddress: remoteAddress, transport: transport, trusted: true)
        transport.attach(session)
        endpoints.hooks.sessionOpened(session)
        return InProcessConnection(session: session, transport: transport, dispatcher: endpoints.dispatcher)
    }
}

/// A session opened on a node from the same process (``Node/connectInProcess(remoteAddress:onMessage:onClose:)``).
///
/// ``send(_:)`` may be called from any thread; messages are dispatched in the order they were sent.
public final class InProcessConnection: Sendable {
    /// The node-side session (its ``Session/id`` is the `sender` of everything sent here).
    public let session: Session
    private let transport: InProcessTransport
    private let dispatcher: CommandDispatcher

    fileprivate init(session: Session, transport: InProcessTransport, dispatcher: CommandDispatcher) {
        self.session = session
        self.transport = transport
        self.dispatcher = dispatcher
    }

    /// Whether the session is still open.
    public var isOpen: Bool { session.isActive }

    /// Hands `message` to the node as if it had arrived on a socket (the node stamps `sender`, `server` and
    /// `remote-addr`). A message sent after the session closed is dropped.
    public func send(_ message: Message) {
        let session = self.session
        let dispatcher = self.dispatcher
        // The node closes every session before it releases its event loops, so this also keeps work off a loop that
        // is shutting down.
        guard session.isActive else { return }
        session.eventLoop.execute {
            guard session.isActive else { return }
            dispatcher.dispatch(message, session: session)
        }
    }

    /// Hands `message` to the node now, on the session's event loop (where the caller must be): for code that lives
    /// on that loop (``send(_:)`` would queue a task and take the message a turn later). The node may call the
    /// session's `onMessage` before this returns. A message sent after the session closed is dropped.
    public func dispatchOnLoop(_ message: Message) {
        session.eventLoop.assertInEventLoop()
        guard session.isActive else { return }
        dispatcher.dispatch(message, session: session)
    }

    /// Prepares `message` for repeated ``dispatchOnLoop(_:)-(PreparedRequest)`` on this connection: stamped and its
    /// handler looked up now, not at each dispatch. `nil` when it needs the full path each time (dispatch the message
    /// itself then).
    public func prepare(_ message: Message) -> PreparedRequest? {
        dispatcher.prepare(message, session: session)
    }

    /// ``dispatchOnLoop(_:)-(Message)`` for a request ``prepare(_:)`` returned.
    public func dispatchOnLoop(_ prepared: PreparedRequest) {
        session.eventLoop.assertInEventLoop()
        guard session.isActive else { return }
        dispatcher.dispatch(prepared, session: session)
    }

    /// Closes the session: the node releases what it held and `onClose` is called.
    public func close() {
        guard session.isActive else { return }
        transport.closeOnLoop()
    }
}

/// Delivers a session's messages to an in-process callback instead of a socket.
final class InProcessTransport: SessionTransport, @unchecked Sendable {
    let eventLoop: any EventLoop
    private let hooks: ConnectionHooks
    private let onMessage: @Sendable (Message) -> Void
    private let onClose: @Sendable () -> Void
    // Set once right after creation, before the transport is shared; then confined to `eventLoop`.
    private var session: Session?
    private var closed = false

    init(eventLoop: any EventLoop, hooks: ConnectionHooks, onMessage: @escaping @Sendable (Message) -> Void,
         onClose: @escaping @Sendable () -> Void) {
        self.eventLoop = eventLoop
        self.hooks = hooks
        self.onMessage = onMessage
        self.onClose = onClose
    }

    func attach(_ session: Session) { self.session = session }

    func write(_ message: Message) {
        guard !closed else { return }
        onMessage(message)
    }

    func flush() {}

    /// Each message is handed over as it is written: nothing to flush.
    var needsFlush: Bool { false }

    func close() {
        eventLoop.assertInEventLoop()
        guard !closed, let session else { return }
        closed = true
        session.markClosed()
        hooks.sessionClosed(session)
        onClose()
    }

    /// ``close()`` from any thread.
    func closeOnLoop() {
        if eventLoop.inEventLoop {
            close()
        } else {
            eventLoop.execute { self.close() }
        }
    }
}
