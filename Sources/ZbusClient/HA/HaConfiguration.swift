/// How an ``HaBroker`` follows its trackers and fails over.
public struct HaConfiguration: Sendable {
    /// How long a request waits for the first topology (zbus 6.3 waited 3 s for the first `pub_all`).
    public var firstTopologyTimeout: Duration = .seconds(3)
    /// How long a subscription waits for a tracker's answer to `sub_all` before it gives the connection up.
    public var subscribeTimeout: Duration = .seconds(5)
    /// After a tracker (re)subscribes, how long its previous view still counts next to its new answer (a restarted
    /// tracker knows nothing until the brokers report to it again, which they do within a few seconds).
    public var settle: Duration = .seconds(5)
    /// The pauses between attempts to reach a tracker that cannot be connected to.
    public var trackerBackoff = Backoff(initial: .milliseconds(100), maximum: .seconds(3), jitter: 0.2)
    /// How long a request keeps trying other brokers after failures before it gives up (also its wait when no
    /// broker hosts the MQ at the moment, for example while the only one restarts).
    public var failoverTimeout: Duration = .seconds(10)
    /// How long a broker whose connection failed is avoided, unless a tracker announces it again (`server_join`)
    /// sooner. Every broker of an MQ being avoided, they are tried anyway.
    public var avoidFailedServerFor: Duration = .seconds(5)
    /// How long a connection to one broker may take. Short, so that a request sent to a broker that just died fails
    /// over quickly instead of waiting out ``ClientConfiguration/connectTimeout``.
    public var serverConnectTimeout: Duration = .milliseconds(300)
    /// Connections per broker shared by requests.
    public var poolSize = 2
    /// The token presented to the trackers with `sub_all` (its `token` header). A tracker node with an `auth` section
    /// answers `sub_all` only for a token with the `tracker` permission (`tracker: true`, docs/security.md); `nil`
    /// (the default) subscribes without one, as zbus 6.3 clients do. Requests to the brokers carry their own tokens
    /// (a producer's or consumer's), not this one.
    public var trackerToken: String?

    /// The defaults.
    public init() {}
}
