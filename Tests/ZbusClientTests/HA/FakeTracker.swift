import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Zbus

/// A tracker that speaks the zbus 6.3 subscriber protocol from a table the test sets: it answers `sub_all` with one
/// `server_join` per broker and `pub_all` (the request's `id` kept), and pushes whatever the test pushes to every
/// subscriber. For client tests that need a tracker's answers without the tracker module.
final class FakeTracker: Sendable {
    private let group: any EventLoopGroup
    private let state = NIOLockedValueBox(State())
    /// The port it listens on (kept across ``stop()`` and ``start()``, to play a restarted tracker).
    let port: Int

    private struct State {
        var servers: [String] = []
        var entries: [TrackerEntry] = []
        var subscribers: [ObjectIdentifier: any Channel] = [:]
        var server: (any Channel)?
        var subscriptions = 0
    }

    /// Starts listening on an OS-chosen port.
    init(group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws {
        self.group = group
        let channel = try await Self.bind(group: group, port: 0, state: state)
        state.withLockedValue { $0.server = channel }
        port = channel.localAddress?.port ?? 0
    }

    var address: String { "127.0.0.1:\(port)" }

    /// How many `sub_all` it answered.
    var subscriptions: Int { state.withLockedValue { $0.subscriptions } }

    /// Replaces the table `sub_all` answers from (pushes nothing).
    func setTable(servers: [String], entries: [TrackerEntry]) {
        state.withLockedValue {
            $0.servers = servers
            $0.entries = entries
        }
    }

    /// Pushes `message` to every subscriber.
    func push(_ message: Message) {
        let channels = state.withLockedValue { Array($0.subscribers.values) }
        for channel in channels { channel.writeAndFlush(message, promise: nil) }
    }

    /// Pushes `server_join` for `server`.
    func pushJoin(_ server: String) {
        var message = Message()
        message.cmd = "server_join"
        message.server = server
        push(message)
    }

    /// Pushes `server_leave` for `server`.
    func pushLeave(_ server: String) {
        var message = Message()
        message.cmd = "server_leave"
        message.server = server
        push(message)
    }

    /// Pushes `entry_update` with `entry`.
    func pushUpdate(_ entry: TrackerEntry) {
        var message = Message(text: entry.description)
        message.cmd = "entry_update"
        push(message)
    }

    /// Closes the listener and every connection (a killed tracker).
    func stop() async {
        let (server, channels) = state.withLockedValue { state -> ((any Channel)?, [any Channel]) in
            defer {
                state.server = nil
                state.subscribers.removeAll()
            }
            return (state.server, Array(state.subscribers.values))
        }
        try? await server?.close()
        for channel in channels { try? await channel.close() }
    }

    /// Listens again on the same port.
    func start() async throws {
        let channel = try await Self.bind(group: group, port: port, state: state)
        state.withLockedValue { $0.server = channel }
    }

    private static func bind(group: any EventLoopGroup, port: Int, state: NIOLockedValueBox<State>) async throws -> any Channel {
        try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(MessageDecoder()))
                    try channel.pipeline.syncOperations.addHandler(MessageEncoder())
                    try channel.pipeline.syncOperations.addHandler(Handler(state: state))
                }
            }
            .bind(host: "127.0.0.1", port: port).get()
    }

    private final class Handler: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = Message
        typealias OutboundOut = Message
        let state: NIOLockedValueBox<State>

        init(state: NIOLockedValueBox<State>) { self.state = state }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let request = unwrapInboundIn(data)
            guard request.cmd == "sub_all" else { return }
            let channel = context.channel
            let (servers, entries) = state.withLockedValue { state -> ([String], [TrackerEntry]) in
                state.subscribers[ObjectIdentifier(channel)] = channel
                state.subscriptions += 1
                return (state.servers, state.entries)
            }
            for server in servers {
                var join = Message()
                join.cmd = "server_join"
                join.server = server
                context.write(wrapOutboundOut(join), promise: nil)
            }
            var all = Message(text: entries.map(\.description).joined(separator: "\n"))
            all.cmd = "pub_all"
            all.id = request.id
            context.writeAndFlush(wrapOutboundOut(all), promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            let id = ObjectIdentifier(context.channel)
            state.withLockedValue { _ = $0.subscribers.removeValue(forKey: id) }
            context.fireChannelInactive()
        }
    }
}
