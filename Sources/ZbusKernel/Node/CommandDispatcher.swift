import Logging

/// Routes each inbound message to the handler of its `cmd`, on the connection's event loop, in arrival order.
///
/// Before dispatch it stamps `sender`, `server` and `remote-addr` (overwriting what the client sent, except the `server`
/// of a tracker report, which names the reporting node) and, when the message has no `cmd` header, fills `cmd` and
/// `mq` from the URL (`/?cmd=test`, `/Q?cmd=query_mq`). A message that still names no command goes to the default
/// route (``ExtensionPoint/defaultRoute``), if a module claimed it.
public final class CommandDispatcher: Sendable {
    private let handlers: [String: any CommandHandler]
    private let defaultRoute: (any CommandHandler)?
    /// Handlers of exact URL paths (``ExtensionPoint/httpPaths``), tried for requests that name no command.
    private let pathHandlers: [String: any CommandHandler]
    private let serverAddress: String
    private let logger: Logger
    /// The `auth` section, if access control is on.
    private let accessPolicy: AccessPolicy?

    /// Creates a dispatcher over `handlers`, stamping `serverAddress` as `server`.
    ///
    /// - Parameters:
    ///   - handlers: the handler of each `cmd` value.
    ///   - defaultRoute: the handler of messages that name no command; without one they are answered 400.
    ///   - pathHandlers: the handlers of exact URL paths (`/metrics`), for messages that name no command; they go
    ///     before the default route.
    ///   - serverAddress: stamped as `server`.
    ///   - logger: where unknown commands are logged (at debug level).
    ///   - accessPolicy: access control (see ``CommandAccess``); `nil` leaves every command to its handler.
    public init(handlers: [String: any CommandHandler], defaultRoute: (any CommandHandler)? = nil,
                pathHandlers: [String: any CommandHandler] = [:], serverAddress: String, logger: Logger,
                accessPolicy: AccessPolicy? = nil) {
        self.accessPolicy = accessPolicy
        // Commands that the dispatcher checks are wrapped once here, so that the others (the MQ commands, which check
        // themselves) pay nothing per request.
        var handlers = handlers
        if let accessPolicy {
            for (cmd, handler) in handlers where !CommandAccess.checkedByHandler.contains(cmd) {
                handlers[cmd] = AccessCheckedHandler(cmd: cmd, handler: handler, policy: accessPolicy, logger: logger)
            }
        }
        self.handlers = handlers
        self.defaultRoute = defaultRoute
        self.pathHandlers = pathHandlers
        self.serverAddress = serverAddress
        self.logger = logger
    }

    /// The stamp for messages of `session` (see ``MessageDecoder/init(limits:stamp:)``).
    public func stamp(for session: (id: String, remoteAddress: String)) -> InboundStamp {
        InboundStamp(sender: session.id, server: serverAddress, remoteAddress: session.remoteAddress)
    }

    /// Dispatches one message from `session`, stamping `sender`, `server` and `remote-addr` first.
    public func dispatch(_ message: Message, session: Session) {
        var message = message
        message.headers.set(lowercased: HeaderName.sender, session.id)
        // A tracker report names its reporter in `server` (as the decoder's stamp keeps it); one without it is left
        // without, so that the tracker refuses it rather than list this node as the reporter.
        if !(message.cmd.map(TrackerCommand.reports.contains) ?? false) {
            message.headers.set(lowercased: HeaderName.server, serverAddress)
        }
        message.headers.set(lowercased: HeaderName.remoteAddr, session.remoteAddress)
        dispatch(stamped: message, session: session)
    }

    /// Prepares `message` for repeated dispatch from `session` (see ``PreparedRequest``): stamps it and looks up its
    /// handler once. `nil` for a message that needs more than that per dispatch (no handler for its `cmd`, a tracker
    /// report, one asking to close the connection); dispatch it as usual.
    func prepare(_ message: Message, session: Session) -> PreparedRequest? {
        guard let cmd = message.cmd, !message.closeRequested, !TrackerCommand.reports.contains(cmd),
              let handler = handlers[cmd] else { return nil }
        var stamped = message
        stamped.headers.set(lowercased: HeaderName.sender, session.id)
        stamped.headers.set(lowercased: HeaderName.server, serverAddress)
        stamped.headers.set(lowercased: HeaderName.remoteAddr, session.remoteAddress)
        // Its handler reads its headers on every dispatch (a consume: mq, id, token, topic, timeout): slots, not searches.
        stamped.headers.index()
        return PreparedRequest(message: stamped, handler: handler, session: session)
    }

    /// Dispatches a prepared request: straight to its handler.
    func dispatch(_ prepared: PreparedRequest, session: Session) {
        assert(prepared.session === session, "a prepared request is dispatched only by the session it was prepared for")
        prepared.handler.handle(prepared.message, session: session)
    }

    /// Dispatches one message whose decoder already stamped it.
    func dispatch(stamped message: Message, session: Session) {
        guard let cmd = message.cmd else {
            guard message.uri != nil else { return handle(message, cmd: nil, session: session) }
            // Only a command given in the URL needs a changed copy: the usual request is handled as it came.
            var resolved = message
            let url = resolved.urlRequest
            if let cmd = url.cmd { resolved.cmd = cmd }
            if resolved.mq == nil, let mq = url.mq { resolved.mq = mq }
            return handle(resolved, cmd: url.cmd, session: session)
        }
        handle(message, cmd: cmd, session: session)
    }

    /// Handles `message`, whose `cmd` header (looked up once by the caller) is `command`.
    private func handle(_ message: Message, cmd command: String?, session: Session) {
        if message.closeRequested { session.closeAfterNextReply() }

        // An empty `cmd` header names no command either (zbus 6 treated both alike).
        guard let cmd = command, !cmd.isEmpty else {
            if !pathHandlers.isEmpty, let uri = message.uri, let handler = pathHandlers[String(Self.path(of: uri))] {
                return handler.handle(message, session: session)
            }
            if let defaultRoute { return defaultRoute.handle(message, session: session) }
            logger.debug("request without a command", metadata: ["session": "\(session.id)"])
            let name = command ?? "null"
            return session.send(message.reply(status: 400, body: "Bad format: command(\(name)) not support", includeMq: false))
        }
        switch cmd {
        case BuiltInCommands.test:
            session.send(message.reply(status: 200, body: "OK", includeMq: false))
        case BuiltInCommands.heartbeat:
            break
        default:
            if let handler = handlers[cmd] {
                handler.handle(message, session: session)
            } else {
                logger.debug("unknown command", metadata: ["cmd": "\(cmd)", "session": "\(session.id)"])
                session.send(message.reply(status: 400, body: "Bad format: command(\(cmd)) not support", includeMq: false))
            }
        }
    }

    /// The path of a request string, without its query (`/metrics?x=1` is `/metrics`).
    private static func path(of uri: String) -> Substring {
        guard let query = uri.firstIndex(of: "?") else { return uri[...] }
        return uri[..<query]
    }
}

/// A request an in-process session sends again and again (a worker's consume after each answer), stamped and with its
/// command's handler looked up once (``InProcessConnection/prepare(_:)``): each dispatch then skips the three header
/// stamps and the lookup, about a third of what dispatching the consume cost.
public struct PreparedRequest: Sendable {
    let message: Message
    let handler: any CommandHandler
    /// The session it was stamped for, the only one that may dispatch it.
    let session: Session
}
