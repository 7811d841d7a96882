import Logging
import NIOCore
import ServiceLifecycle
import ZbusTLS

/// Reports this node's entries (its MQs) to every tracker of `trackers:` in the node file, as a zbus 6.3 broker
/// started with `-track` does: the node runs it as a service beside its modules' while `trackers:` lists any.
///
/// Each tracker gets its own connection (``TrackerLink``) on one of the node's event loops, announcing the node's
/// advertised address (`node.advertise`, else the bound one) as its `server`, in TLS when `node.tls.client` is set. At graceful shutdown, which reaches this
/// service before the modules', every tracker hears `server_leave`.
final class TrackerReporter: Service, Sendable {
    /// How often every entry is reported again (zbus 6.3.0 used 5 s though its README said 2 s). Trackers expire an
    /// entry after three intervals without a report.
    static let refreshInterval: TimeAmount = .seconds(2)
    /// Reconnects: quick at first (a restarted tracker learns the node again within about a second), capped so that
    /// a tracker down for long is not hammered.
    static let backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(1), jitter: 0.2)

    private let links: [TrackerLink]
    private let sources: [any TrackedEntrySource]

    init(trackers: [HostAndPort], server: String, sources: [any TrackedEntrySource], group: any EventLoopGroup,
         limits: MessageLimits, tls: ClientTLS? = nil, logger: Logger, token: @escaping @Sendable () -> String? = { nil }) {
        self.sources = sources
        self.links = trackers.map { tracker in
            TrackerLink(tracker: tracker, server: server, sources: sources, loop: group.next(), backoff: Self.backoff,
                        refreshInterval: Self.refreshInterval, limits: limits, tls: tls, logger: logger, token: token)
        }
    }

    /// Connects to every tracker and reports until graceful shutdown, then says goodbye.
    func run() async throws {
        let links = self.links
        for source in sources {
            source.observeTrackedEntries { change in
                for link in links { link.changed(change) }
            }
        }
        for link in links { link.start() }
        try? await gracefulShutdown()
        // A goodbye that cannot be written within a second is given up: the tracker notices the closed connection
        // anyway.
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for link in links { try? await link.stop().get() }
            }
            group.addTask { try? await Task.sleep(for: .seconds(1)) }
            await group.next()
            group.cancelAll()
        }
    }
}
