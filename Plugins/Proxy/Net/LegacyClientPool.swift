import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ZbusKernel

/// One request, one reply, over pooled connections to a legacy service: the transport shared by the `http` and `tcp`
/// adapters.
///
/// A call takes an idle connection (or opens one), writes the request, and waits for exactly one reply; a connection
/// goes back to the pool only after a complete, well-formed reply (and when `reusable` agrees), so a connection that
/// failed, timed out or said too much is closed and never handed out again. Nothing is kept between failures, so
/// when the service comes back the next call simply connects again.
///
/// A kept connection found closed is retried once on a fresh one, as reverse proxies do, only when that cannot make
/// the service act twice: when it was seen closed before the request was written, or when no byte of a reply came
/// and the request may be repeated (`notRepeatable` says why not: an HTTP POST, any tcp record). Otherwise the call
/// fails with ``ProxyError/closedAfterRequest(service:address:why:)``.
final class LegacyClientPool<Request: Sendable, Reply: Sendable>: Sendable {
    /// Adds the protocol's codec handlers to a new channel; the pool puts its exchange handler after them.
    typealias Configure = @Sendable (any Channel) throws -> Void

    let service: String
    let address: HostAndPort
    private let connectTimeout: Duration
    private let maxIdle: Int
    private let configure: Configure
    private let reusable: @Sendable (Reply) -> Bool
    private let notRepeatable: @Sendable (Request) -> String?
    private let idle = NIOLockedValueBox<[Connection]>([])

    private struct Connection: Sendable {
        let channel: any Channel
        let handler: ExchangeHandler<Reply>
    }

    /// - Parameter notRepeatable: why `request` may not be sent again once written (a kept connection closed after
    ///   it, with no reply), or `nil` when repeating it is safe (an idempotent HTTP method).
    init(service: String, address: HostAndPort, connectTimeout: Duration, maxIdle: Int,
         configure: @escaping Configure, reusable: @escaping @Sendable (Reply) -> Bool = { _ in true },
         notRepeatable: @escaping @Sendable (Request) -> String?) {
        self.service = service
        self.address = address
        self.connectTimeout = connectTimeout
        self.maxIdle = maxIdle
        self.configure = configure
        self.reusable = reusable
        self.notRepeatable = notRepeatable
    }

    /// Sends `request` and returns the service's reply.
    ///
    /// - Throws: ``ProxyError/serviceDown(service:address:reason:)`` when no connection can be made or it drops
    ///   before writing, ``ProxyError/badReply(service:address:reason:)`` for an unreadable reply or a connection
    ///   closed mid-reply, ``ProxyError/closedAfterRequest(service:address:why:)`` for a kept connection closed
    ///   after a request that may not be repeated, `CancellationError` when the caller gave up (the connection is
    ///   closed).
    ///
    /// - Parameter timeout: the limit of the whole call, connect included; past it the connection is closed and the
    ///   call throws ``ProxyError/timedOut(service:address:after:)``.
    func exchange(_ request: Request, timeout: Duration) async throws -> Reply {
        let deadline = NIODeadline.now() + timeout.nioTimeAmount
        let timedOut = ProxyError.timedOut(service: service, address: address.description, after: timeout)
        let (connection, reused) = try await checkOut(deadline: deadline, timedOut: timedOut)
        do {
            return try await exchange(request, on: connection, deadline: deadline, timedOut: timedOut)
        } catch let error as ExchangeErrors.Closed where reused {
            // A pooled connection the service closed while idle (restart, idle timeout): the close can race the
            // check-out. Try once more on a fresh connection, which also tells a service that is now down; but not
            // a request the service may already have acted on.
            if error.requestSent, let why = notRepeatable(request) {
                throw ProxyError.closedAfterRequest(service: service, address: address.description, why: why)
            }
            let fresh = try await connect(deadline: deadline, timedOut: timedOut)
            return try await exchange(request, on: fresh, deadline: deadline, timedOut: timedOut)
        } catch let error as ExchangeErrors.Closed {
            throw error.proxyError
        }
    }

    private func exchange(_ request: Request, on connection: Connection, deadline: NIODeadline, timedOut: ProxyError) async throws -> Reply {
        let channel = connection.channel
        let handler = connection.handler
        let promise = channel.eventLoop.makePromise(of: Reply.self)
        let reply: Reply
        do {
            reply = try await withTaskCancellationHandler {
                // The timeout is a timer on the connection's loop: no task or thread per call.
                let timer = channel.eventLoop.scheduleTask(deadline: deadline) {
                    handler.fail(timedOut)
                    channel.close(promise: nil)
                }
                promise.futureResult.whenComplete { _ in timer.cancel() }
                channel.eventLoop.execute {
                    handler.begin(promise)
                    channel.writeAndFlush(request).whenFailure { error in
                        handler.fail(ProxyError.serviceDown(service: self.service, address: self.address.description, reason: "write failed: \(ErrorText.describe(error))"))
                    }
                }
                return try await promise.futureResult.get()
            } onCancel: {
                channel.eventLoop.execute {
                    handler.fail(CancellationError())
                    channel.close(promise: nil)
                }
            }
        } catch {
            channel.close(promise: nil)
            throw error
        }
        if reusable(reply) { checkIn(connection) } else { channel.close(promise: nil) }
        return reply
    }

    /// Closes the idle connections.
    func shutdown() async {
        let connections = idle.withLockedValue { idle -> [Connection] in
            defer { idle = [] }
            return idle
        }
        for connection in connections { try? await connection.channel.close() }
    }

    private func checkOut(deadline: NIODeadline, timedOut: ProxyError) async throws -> (Connection, reused: Bool) {
        while let connection = idle.withLockedValue({ $0.popLast() }) {
            if connection.channel.isActive { return (connection, true) }
        }
        return (try await connect(deadline: deadline, timedOut: timedOut), false)
    }

    private func connect(deadline: NIODeadline, timedOut: ProxyError) async throws -> Connection {
        let remaining = deadline - .now()
        guard remaining > .zero else { throw timedOut }
        let service = self.service
        let address = self.address
        let configure = self.configure
        let errorFactory = ExchangeErrors(service: service, address: address.description)
        let bootstrap = ClientBootstrap(group: ProxyEventLoops.group)  // resolved at the first connect, never at config time
            .connectTimeout(min(connectTimeout.nioTimeAmount, remaining))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try configure(channel)
                    try channel.pipeline.syncOperations.addHandler(ExchangeHandler<Reply>(errors: errorFactory))
                }
            }
        do {
            let channel = try await bootstrap.connect(host: address.host, port: address.port).get()
            let handler = try await channel.eventLoop.submit {
                try channel.pipeline.syncOperations.handler(type: ExchangeHandler<Reply>.self)
            }.get()
            return Connection(channel: channel, handler: handler)
        } catch ChannelError.connectTimeout(_) where deadline <= .now() {
            throw timedOut
        } catch {
            throw ProxyError.serviceDown(service: service, address: address.description, reason: Self.describe(error))
        }
    }

    private func checkIn(_ connection: Connection) {
        let keep = idle.withLockedValue { idle -> Bool in
            guard idle.count < maxIdle else { return false }
            idle.append(connection)
            return true
        }
        if !keep { connection.channel.close(promise: nil) }
    }

    private static func describe(_ error: any Error) -> String {
        if let error = error as? NIOConnectionError {
            if let first = error.connectionErrors.first { return "connect failed: \(ErrorText.describe(first.error))" }
            if let dns = error.dnsAAAAError ?? error.dnsAError { return "cannot resolve host: \(dns)" }
        }
        return "connect failed: \(ErrorText.describe(error))"
    }
}

/// Builds the errors an exchange reports, naming the service and its address.
struct ExchangeErrors: Sendable {
    let service: String
    let address: String

    /// The connection closed before any byte of a reply (kept apart so that a stale pooled connection can be
    /// retried); a connection closed mid-reply is a reader's error instead.
    struct Closed: Error, CustomStringConvertible {
        let proxyError: ProxyError
        /// Whether the request had been written when the close was seen: if so, the service may have acted on it.
        let requestSent: Bool
        var description: String { proxyError.description }
    }

    /// The connection closed: seen before the request was written (`requestSent` false), or while waiting for its
    /// reply (the default: the safe assumption, under which a request that may not be repeated is not).
    func closed(requestSent: Bool = true) -> Closed {
        Closed(proxyError: .badReply(service: service, address: address, reason: "the connection closed before a complete reply"),
               requestSent: requestSent)
    }

    func garbage(_ error: any Error) -> ProxyError {
        if let error = error as? ProxyError { return error }
        return .badReply(service: service, address: address, reason: "\(error)")
    }

    func unsolicited() -> ProxyError {
        .badReply(service: service, address: address, reason: "it sent data nobody asked for")
    }
}

/// Matches the one request in flight on a connection with its reply; loop-confined (the pool reaches it only on the
/// channel's event loop), hence `@unchecked Sendable`.
final class ExchangeHandler<Reply: Sendable>: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = Reply

    private let errors: ExchangeErrors
    private var pending: EventLoopPromise<Reply>?
    private var active = true

    init(errors: ExchangeErrors) {
        self.errors = errors
    }

    /// Starts waiting for the reply to the request about to be written.
    func begin(_ promise: EventLoopPromise<Reply>) {
        guard active else { return promise.fail(errors.closed(requestSent: false)) }
        pending = promise
    }

    /// Fails the request in flight, if any.
    func fail(_ error: any Error) {
        guard let promise = pending else { return }
        pending = nil
        promise.fail(error)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let reply = unwrapInboundIn(data)
        guard let promise = pending else {
            // Bytes that answer nothing: the connection can no longer be trusted to pair replies with requests.
            context.close(promise: nil)
            return
        }
        pending = nil
        promise.succeed(reply)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(errors.garbage(error))
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        active = false
        fail(errors.closed(requestSent: true))  // a call in flight was written in the same turn it began
        context.fireChannelInactive()
    }
}
