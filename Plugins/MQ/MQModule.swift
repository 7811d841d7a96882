import ZbusKernel

/// The `mq` plugin module: every zbus 6.3 MQ command on the node's durable queue store.
///
/// ```yaml
/// modules:
///   - module: mq
///     fsync: interval        # none | interval | always (group commit)
///     fsync_interval: 100ms
///     max_length: 0          # default backlog limit of new MQs (0 = unbounded)
/// ```
public final class MQModule: PluginModule {
    public static let name = "mq"
    public static let summary = "Message queues: produce, consume, route, create/query/remove MQ, keys, on the durable store."
    public static let configKeys = MQSettings.keys

    let broker: MQBroker

    public init(setup: ModuleSetup) throws(ConfigError) {
        broker = MQBroker(settings: try MQSettings(setup.config), node: setup.node, logger: setup.logger)
    }

    /// The MQ commands, and the default route: a request without any command is a URL call of an RPC-mode MQ
    /// (`/<mq>/<module>/<method>?params=...`).
    public func contribute(to contributions: inout ModuleContributions) {
        let broker = self.broker
        func handler(_ body: @escaping @Sendable (MQBroker, Message, Session) -> Void) -> any CommandHandler {
            ClosureCommandHandler { request, session in body(broker, request, session) }
        }
        let commands: [(String, any CommandHandler)] = [
            ("produce", handler { $0.produce($1, session: $2) }),
            ("consume", handler { $0.consume($1, session: $2) }),
            ("route", handler { $0.route($1, session: $2) }),
            ("create_mq", handler { $0.createMQ($1, session: $2) }),
            ("remove_mq", handler { $0.removeMQ($1, session: $2) }),
            ("query_mq", handler { $0.queryMQ($1, session: $2) }),
            ("data", handler { $0.data($1, session: $2) }),
            ("add_key", handler { $0.addKey($1, session: $2) }),
            ("remove_key", handler { $0.removeKey($1, session: $2) }),
        ]
        for (command, handler) in commands { contributions.add(handler, named: command, to: .commands) }
        contributions.add(handler { $0.urlCall($1, session: $2) }, to: .defaultRoute)
        contributions.add(MQStatisticsSource(broker: broker), to: .queueStatistics)
        contributions.add(MQTrackedEntries(broker: broker), named: "mq", to: .trackedEntries)
    }

    public func start(_ context: NodeContext) async throws {
        try broker.start(context)
    }

    public func shutdown() async {
        broker.shutdown()
    }

    public func sessionDidClose(_ session: Session) {
        broker.sessionClosed(session)
    }
}

/// The MQs as the monitor shows them (``ExtensionPoint/queueStatistics``).
struct MQStatisticsSource: QueueStatisticsSource {
    let broker: MQBroker

    func queueStatistics() -> [QueueStatistics] { broker.queueStatistics() }
    func queueDetail(named name: String) -> QueueDetail? { broker.queueDetail(named: name) }
    func storeBytes() -> Int64 { broker.storeBytes() }
    func mayRead(queue name: String, token: String?) -> Bool { broker.mayRead(named: name, token: token) }
}
