import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle
import ZbusKernel

/// The `tracker` module: the tracker role of zbus 6.3 (`TrackServer`), which tells clients which node hosts which MQ.
///
/// Brokers report to it (`server_join`, `entry_update`, `entry_remove`, `server_leave`); clients subscribe
/// (`sub_all`) and get every server and entry, then every change as it happens. A broker whose reporting connection
/// drops leaves at once; an entry not refreshed within `expire_after` expires. `tracker_info` answers the table as
/// JSON (read-only).
///
/// ```yaml
/// modules:
///   - module: tracker
///     expire_after: 6s       # three report intervals of 2 s
///     max_servers: 1000
///     max_entries: 100000
///     max_subscribers: 10000
///     max_line_bytes: 4096
/// ```
public final class TrackerModule: PluginModule {
    public static let name = "tracker"
    public static let summary = "Tracker for high availability: brokers report their MQs, clients subscribe (sub_all) to follow them."
    public static let configKeys = TrackerSettings.keys

    /// The command that answers the table as JSON.
    public static let infoCommand = "tracker_info"

    let hub: TrackerHub
    private let serverAddress = NIOLockedValueBox("")

    public init(setup: ModuleSetup) throws(ConfigError) {
        hub = TrackerHub(settings: try TrackerSettings(setup.config), logger: setup.logger)
    }

    public func contribute(to contributions: inout ModuleContributions) {
        let hub = self.hub
        let address = self.serverAddress
        let commands: [(String, @Sendable (Message, Session) -> Void)] = [
            (TrackerCommand.serverJoin, { hub.serverJoin($0, session: $1) }),
            (TrackerCommand.entryUpdate, { hub.entryUpdate($0, session: $1) }),
            (TrackerCommand.entryRemove, { hub.entryRemove($0, session: $1) }),
            (TrackerCommand.serverLeave, { hub.serverLeave($0, session: $1) }),
            (TrackerCommand.subAll, { hub.subscribe($0, session: $1) }),
            (Self.infoCommand, { hub.info($0, session: $1, serverAddress: address.withLockedValue { $0 }) }),
        ]
        for (command, body) in commands { contributions.add(ClosureCommandHandler(body), named: command, to: .commands) }
        // On a node that also loads the monitor, its page shows the cluster as this tracker sees it.
        contributions.add(TrackerClusterPanel(hub: hub), named: "cluster", to: .monitorPanels)
    }

    public func start(_ context: NodeContext) async throws {
        serverAddress.withLockedValue { $0 = context.serverAddress }
    }

    /// Expires stale entries, checking every quarter of `expire_after` (at most every second), until shutdown.
    public func run() async throws {
        let period = Duration.milliseconds(min(1_000, max(100, hub.settings.limits.expireAfterMilliseconds / 4)))
        while !Task.isCancelled {
            do { try await cancelWhenGracefulShutdown { try await Task.sleep(for: period) } } catch { break }
            hub.expire()
        }
    }

    public func sessionDidClose(_ session: Session) {
        hub.sessionClosed(session)
    }
}
