import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ZbusKernel

/// Why an RPC service could not be hosted.
public enum RpcHostingError: Error, Sendable, CustomStringConvertible {
    /// The direct RPC server could not listen on its address.
    case bindFailed(address: HostAndPort, reason: String)
    /// `start()` was called twice, or after `stop()`.
    case notStartable(what: String, state: String)
    /// The MQ of an MQ-RPC service could not be created or consumed.
    case queueUnavailable(mq: String, broker: String, reason: String)

    /// What went wrong, in one line.
    public var description: String {
        switch self {
        case .bindFailed(let address, let reason):
            return "direct RPC server cannot listen on \(address): \(reason) (choose another address, or port 0 for any free one)"
        case .notStartable(let what, let state):
            return "\(what) cannot be started: it is \(state)"
        case .queueUnavailable(let mq, let broker, let reason):
            return "MQ-RPC service on MQ '\(mq)' at \(broker) cannot run: \(reason)"
        }
    }
}

/// A direct RPC server: a port speaking the zbus framing where every message is an RPC call (zbus 6
/// `rpc/direct/Service`).
///
/// ```swift
/// let server = DirectRpcServer(responder: RpcResponder(processor: processor))
/// let address = try await server.start()                 // 127.0.0.1 and a free port by default
/// let rpc = RpcInvoker(try MessageClient(address: "\(address)"), module: "calc")
/// try await rpc.call("plus", 1, 2, as: Int.self)          // 3
/// await server.stop()
/// ```
///
/// - Any message except `heartbeat` is a call; `cmd` and `mq` are ignored. The reply carries the request's `id`.
/// - A request without a body and without a `method` header is read from its URL: `GET /calc/plus?params=1,2`,
///   `GET /plus?1,2`; `GET /` answers the method catalogue. So browsers and curl are clients too.
/// - Synchronous methods answer on the connection's event loop; `async` ones in a task, and their replies may overtake
///   earlier ones on the same connection (zbus clients match replies by `id`).
/// - `Connection: close` and HTTP/1.0 are honoured, framing limits enforced as on a node.
public final class DirectRpcServer: Sendable {
    /// The request logic.
    public let responder: RpcResponder
    /// Where it listens (port 0: any free port; see ``address`` once started).
    public let listen: HostAndPort
    private let eventLoopGroup: any EventLoopGroup
    private let limits: MessageLimits
    /// Connection caps, timeouts and byte budgets, as on the node's own port (`nil`: none).
    private let governor: ConnectionGovernor?
    /// Wraps each connection in TLS; `nil` for plain TCP.
    private let tls: TLS?
    private let logger: Logger
    private let state = NIOLockedValueBox(State.idle)
    private let connections = NIOLockedValueBox<[ObjectIdentifier: any Channel]>([:])

    /// Where a TLS connection's context comes from.
    private enum TLS: Sendable {
        /// One context for the server's life.
        case fixed(ServerTLSContext)
        /// The store's context when the connection is accepted (reloadable, see ``TLSCertificateStore``).
        case store(TLSCertificateStore)
    }

    private enum State {
        case idle
        case starting
        case running(any Channel, HostAndPort)
        case stopped
    }

    /// Creates a server; nothing listens until ``start()``.
    ///
    /// - Parameters:
    ///   - responder: the processor and codecs.
    ///   - listen: the address to listen on; `127.0.0.1:0` (a free port on the loopback) by default.
    ///   - eventLoopGroup: where connections run; NIO's shared group by default (a node passes its own).
    ///   - limits: the framing limits (header and body sizes).
    ///   - connectionLimits: connection caps, idle and header timeouts and byte budgets, counted for this port
    ///     alone (a node passes its own `node.limits`); `nil` for none.
    ///   - tls: a TLS server context (``ServerTLSFiles/makeContext()``) to wrap every connection in; `nil` (the
    ///     default) for plain TCP.
    ///   - logger: where connection problems are logged.
    public init(responder: RpcResponder, listen: HostAndPort = HostAndPort(host: "127.0.0.1", port: 0),
                eventLoopGroup: (any EventLoopGroup)? = nil, limits: MessageLimits = .default,
                connectionLimits: ConnectionLimits? = nil, tls: ServerTLSContext? = nil,
                logger: Logger = Logger(label: "zbus.rpc.direct")) {
        self.responder = responder
        self.listen = listen
        self.eventLoopGroup = eventLoopGroup ?? MultiThreadedEventLoopGroup.singleton
        self.limits = limits
        self.governor = connectionLimits.map(ConnectionGovernor.init(limits:))
        self.tls = tls.map(TLS.fixed)
        self.logger = logger
    }

    /// Creates a server whose connections are wrapped in TLS with the certificate `certificates` holds when each is
    /// accepted, so that ``TLSCertificateStore/reload()`` (SIGHUP) reaches new connections; nothing listens until
    /// ``start()``.
    ///
    /// The store's own handshake deadline applies (a node's store holds handshakes to its `header_timeout`).
    ///
    /// - Parameters:
    ///   - responder: the processor and codecs.
    ///   - listen: the address to listen on.
    ///   - eventLoopGroup: where connections run; NIO's shared group by default.
    ///   - limits: the framing limits.
    ///   - connectionLimits: connection caps, timeouts and byte budgets for this port alone; `nil` for none.
    ///   - certificates: the TLS store, the node's (``NodeContext/tlsCertificates``) or one of the server's own.
    ///   - logger: where connection problems are logged.
    public init(responder: RpcResponder, listen: HostAndPort, eventLoopGroup: (any EventLoopGroup)? = nil,
                limits: MessageLimits = .default, connectionLimits: ConnectionLimits? = nil,
                certificates: TLSCertificateStore, logger: Logger = Logger(label: "zbus.rpc.direct")) {
        self.responder = responder
        self.listen = listen
        self.eventLoopGroup = eventLoopGroup ?? MultiThreadedEventLoopGroup.singleton
        self.limits = limits
        self.governor = connectionLimits.map(ConnectionGovernor.init(limits:))
        self.tls = .store(certificates)
        self.logger = logger
    }

    /// Creates a server for `processor` speaking `codecs`.
    public convenience init(processor: RpcProcessor, codecs: RpcCodecSet = .standard,
                            listen: HostAndPort = HostAndPort(host: "127.0.0.1", port: 0),
                            eventLoopGroup: (any EventLoopGroup)? = nil, logger: Logger = Logger(label: "zbus.rpc.direct")) {
        self.init(responder: RpcResponder(processor: processor, codecs: codecs), listen: listen, eventLoopGroup: eventLoopGroup,
                  logger: logger)
    }

    /// The bound address once started.
    public var address: HostAndPort? {
        state.withLockedValue { state in
            if case .running(_, let address) = state { return address }
            return nil
        }
    }

    /// Starts listening.
    ///
    /// - Returns: the bound address (with port 0, the port the OS chose).
    /// - Throws: ``RpcHostingError/bindFailed(address:reason:)``, or ``RpcHostingError/notStartable(what:state:)``.
    @discardableResult
    public func start() async throws -> HostAndPort {
        try state.withLockedValue { state in
            guard case .idle = state else { throw RpcHostingError.notStartable(what: "the direct RPC server", state: "\(state)") }
            state = .starting
        }
        let responder = self.responder
        let limits = self.limits
        let logger = self.logger
        let governor = self.governor
        let connections = self.connections
        let tls = self.tls
        let channel: any Channel
        do {
            channel = try await ServerBootstrap(group: eventLoopGroup)
                .serverChannelOption(.backlog, value: 256)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                // Out of descriptors, `accept` fails at once while the connection stays queued: pause, not spin.
                .serverChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(AcceptPauseHandler(pause: .milliseconds(100), logger: logger))
                    }
                }
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .childChannelOption(.maxMessagesPerRead, value: 16)
                .childChannelInitializer { channel in
                    let key = ObjectIdentifier(channel)
                    connections.withLockedValue { $0[key] = channel }
                    channel.closeFuture.whenComplete { _ in _ = connections.withLockedValue { $0.removeValue(forKey: key) } }
                    return channel.eventLoop.makeCompletedFuture {
                        let pipeline = channel.pipeline.syncOperations
                        switch tls {
                        case .fixed(let context)?:
                            try pipeline.addHandler(context.makeHandler())
                            // The handshake is held to the header timeout, as on the node's TLS port.
                            try pipeline.addHandler(TLSHandshakeLogger(
                                timeoutMilliseconds: governor?.limits.headerTimeoutMilliseconds ?? 0, logger: logger))
                        case .store(let certificates)?:
                            try certificates.addHandler(to: channel)
                        case nil:
                            break
                        }
                        // A client that pipelines calls without reading the answers cannot make the server buffer
                        // answers without bound: NIO's handler holds reads back while the channel is not writable.
                        try pipeline.addHandler(BackPressureHandler())
                        let remote = channel.remoteAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "unknown"
                        let connectionGuard = governor.map {
                            ConnectionGuard(governor: $0, remoteIP: ConnectionGovernor.addressKey(channel.remoteAddress), remoteAddress: remote, logger: logger)
                        }
                        try pipeline.addHandler(DirectRpcHandler(responder: responder, limits: limits, allocator: channel.allocator,
                                                                 connectionGuard: connectionGuard, logger: logger))
                    }
                }
                .bind(host: listen.host, port: listen.port)
                .get()
        } catch {
            state.withLockedValue { $0 = .idle }
            throw RpcHostingError.bindFailed(address: listen, reason: ErrorText.describe(error))
        }
        let bound = HostAndPort(host: listen.host, port: channel.localAddress?.port ?? listen.port)
        state.withLockedValue { $0 = .running(channel, bound) }
        return bound
    }

    /// Stops listening and closes every connection (calls still running finish, their replies are dropped). Safe to
    /// call more than once.
    public func stop() async {
        let channel: (any Channel)? = state.withLockedValue { state in
            defer { state = .stopped }
            if case .running(let channel, _) = state { return channel }
            return nil
        }
        guard let channel else { return }
        try? await channel.close()
        let open = connections.withLockedValue { Array($0.values) }
        for connection in open { try? await connection.close() }
    }
}

/// One connection of a direct RPC server, framing messages itself (no pipeline hops per message).
final class DirectRpcHandler: ChannelInboundHandler, GuardedConnection {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let responder: RpcResponder
    private let logger: Logger
    private var framer: InboundFramer
    private let outbound: OutboundBatch
    private let connectionGuard: ConnectionGuard?
    private var context: ChannelHandlerContext?
    private var reads: UInt64 = 0
    private var messagesCut: UInt64 = 0
    private var closing = false

    init(responder: RpcResponder, limits: MessageLimits, allocator: ByteBufferAllocator, connectionGuard: ConnectionGuard?,
         logger: Logger) {
        self.responder = responder
        self.logger = logger
        self.framer = InboundFramer(limits: limits)
        self.outbound = OutboundBatch(allocator: allocator)
        self.connectionGuard = connectionGuard
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        if let refusal = connectionGuard?.admit(self, on: context.eventLoop) { refuse(with: refusal) }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        reads &+= 1
        framer.append(unwrapInboundIn(data))
        do {
            while !closing, let request = try framer.next() {
                messagesCut &+= 1
                answer(request, context: context)
            }
            if let connectionGuard, !closing {
                let held = framer.heldFootprint
                if held >= ConnectionLimits.chargeThreshold || connectionGuard.holdsInputCharge,
                    let refusal = connectionGuard.chargeInput(held)
                {
                    refuse(with: refusal)
                }
            }
        } catch {
            logger.debug("refusing malformed input", metadata: ["error": "\(error)"])
            refuse(with: error.closingReply)
        }
    }

    private func answer(_ request: Message, context: ChannelHandlerContext) {
        var request = request
        if request.cmd == BuiltInCommands.heartbeat { return }
        if request.closeRequested { closing = true }
        if request.body.map({ $0.readableBytes == 0 }) ?? true, request.headers[RawRpcCodec.methodHeader] == nil, request.uri != nil {
            request.body = JsonRpcCodec.body(of: RpcUrl.request(fromURLOf: request))
            request.contentType = "application/json"
        }
        let id = request.id
        let close = request.closeRequested
        switch responder.answer(request) {
        case .ready(var reply):
            reply.id = id
            reply.closeRequested = close
            outbound.append(reply, context: context)
            if close { outbound.flushAndClose(context: context) }
        case .later(let makeReply):
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            let eventLoop = context.eventLoop
            Task {
                var reply = await makeReply()
                reply.id = id
                reply.closeRequested = close
                let finished = reply
                eventLoop.execute {
                    let (handler, context) = bound.value
                    guard context.channel.isActive else { return }
                    handler.outbound.append(finished, context: context)
                    if close { handler.outbound.flushAndClose(context: context) } else { handler.flush(context: context) }
                }
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if !outbound.isEmpty { flush(context: context) }
        context.fireChannelReadComplete()
    }

    /// Flushes, then closes a client that leaves more unread than the limits allow.
    private func flush(context: ChannelHandlerContext) {
        outbound.flush(context: context)
        if let connectionGuard, !context.channel.isWritable,
            connectionGuard.chargeOutput(context.channel)
        {
            closeNow()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { connectionGuard?.outputDrained() }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        connectionGuard?.close()
        framer.discardInput()
        outbound.discard()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    // MARK: - Guarded connection

    var isReadingHeaderBlock: Bool { framer.isReadingHeaderBlock }

    var activityCount: UInt64 { reads &+ outbound.writtenBytes }

    var messageCount: UInt64 { messagesCut }

    func closeNow() {
        guard let context else { return }
        closing = true
        outbound.discard()
        context.close(promise: nil)
    }

    func refuse(with reply: Message) {
        guard let context else { return }
        closing = true
        framer.discardInput()
        outbound.append(reply, context: context)
        outbound.flushAndClose(context: context)
    }

}
