/// Answers one `cmd` value on the node's port.
///
/// `handle` runs on the connection's event loop, in the order the connection sent its messages, and must not block.
/// It may reply at once (`session.send(request.reply(...))`), later from any thread (for example a parked `consume`),
/// or never (`heartbeat`, `produce` with `ack: 0`).
public protocol CommandHandler: Sendable {
    /// Handles `request`, whose `cmd` is one this handler was registered for.
    ///
    /// - Parameters:
    ///   - request: the decoded message, with `sender`, `server` and `remote-addr` already stamped by the node.
    ///   - session: the connection it came from; replies go through ``Session/send(_:)``.
    func handle(_ request: Message, session: Session)
}

/// A ``CommandHandler`` made from a closure, for small commands.
public struct ClosureCommandHandler: CommandHandler {
    private let body: @Sendable (Message, Session) -> Void

    /// Wraps `body`.
    public init(_ body: @escaping @Sendable (Message, Session) -> Void) {
        self.body = body
    }

    public func handle(_ request: Message, session: Session) {
        body(request, session)
    }
}
