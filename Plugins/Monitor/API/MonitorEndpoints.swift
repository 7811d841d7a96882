import NIOCore
import ZbusKernel

/// The monitor's URL paths and what answers each. All are read-only.
///
/// Access (see docs/security.md): an MQ protected by an `access_token` is left out of the JSON and `/metrics` unless
/// the request presents that token. With an `auth` section, the page and its JSON need a caller with some permission
/// (a token, `Authorization: Bearer`, or `?token=`) and show only the MQs it has a permission on (the panels only to
/// an admin of `*`); `/metrics` likewise unless `auth.metrics_open`; `/health` and the page's script and styles
/// (compiled-in, no data) are always open.
enum MonitorEndpoints {
    static let page = "/"
    static let script = "/monitor/app.js"
    static let styles = "/monitor/app.css"
    static let overview = "/monitor/api/overview"
    static let queue = "/monitor/api/mq"
    static let metrics = "/metrics"
    static let health = "/health"

    /// Samples of each MQ's rates the overview carries for the table's sparklines.
    static let sparklineSamples = 60
    /// MQs whose sparklines the overview carries (by name order); the others show numbers only.
    static let sparklineQueues = 200

    static func handlers(state: MonitorState, exporter: MetricsExporter, policy: AccessPolicy?) -> [(String, any CommandHandler)] {
        /// What the caller may see, or `nil` after answering 403.
        @Sendable func permitted(_ request: Message, _ session: Session, what: String) -> Access? {
            let token = request.presentedToken
            guard let policy else { return Access(token: token, panels: true) }
            let caller = policy.caller(token: token)
            guard !caller.grants.isEmpty else {
                session.send(reply(request, status: 403, body: "forbidden: \(what) needs a token with a permission (\(caller.label) has none); pass it as ?token=, Authorization: Bearer or the token header", type: "text/plain"))
                return nil
            }
            return Access(token: token, panels: caller.grants.isAdminEverywhere)
        }
        return [
            (page, ClosureCommandHandler { request, session in
                guard permitted(request, session, what: "the monitor page") != nil else { return }
                session.send(reply(request, body: MonitorPage.html, type: "text/html; charset=utf-8"))
            }),
            (script, ClosureCommandHandler { request, session in
                session.send(reply(request, body: MonitorPage.script, type: "application/javascript; charset=utf-8"))
            }),
            (styles, ClosureCommandHandler { request, session in
                session.send(reply(request, body: MonitorPage.styles, type: "text/css; charset=utf-8"))
            }),
            (overview, ClosureCommandHandler { request, session in
                guard let access = permitted(request, session, what: "the monitor JSON") else { return }
                session.send(reply(request, body: MonitorJSON.overview(state, access: access).jsonText, type: "application/json"))
            }),
            (queue, ClosureCommandHandler { request, session in
                guard let access = permitted(request, session, what: "the monitor JSON") else { return }
                guard let name = request.urlRequest.query["name"], !name.isEmpty else {
                    return session.send(reply(request, status: 400, body: "Bad format: name the MQ: \(queue)?name=MQ", type: "text/plain"))
                }
                guard let detail = MonitorJSON.queue(named: name, state: state, access: access) else {
                    return session.send(reply(request, status: 404, body: "MQ(\(name)) Not Found", type: "text/plain"))
                }
                session.send(reply(request, body: detail.jsonText, type: "application/json"))
            }),
            (metrics, ClosureCommandHandler { request, session in
                let access: Access
                if let policy, policy.metricsOpen {
                    access = Access(token: nil, panels: true, everyQueue: true)
                } else if let granted = permitted(request, session, what: "/metrics") {
                    access = granted
                } else {
                    return
                }
                guard let node = state.node else {
                    return session.send(reply(request, status: 503, body: "the node is starting", type: "text/plain"))
                }
                // Each open connection's byte counts are read on its own event loop; the answer goes once all are in
                // (a client that pipelines another request behind this one may get that answer first, as with a
                // parked consume: scrapers send one request at a time). Not once the node is stopping: its event
                // loops then shut down, and a reading hopping from one to another would be dropped half-way (a
                // promise never completed); the byte counters keep their last values instead.
                let traffic = state.isStopping
                    ? session.eventLoop.makeSucceededFuture(SessionTraffic())
                    : node.sessions.traffic(on: session.eventLoop)
                traffic.whenComplete { result in
                    let text = exporter.exposition(
                        statistics: access.visible(node.queues), connections: node.sessions.count,
                        traffic: (try? result.get()) ?? SessionTraffic(), storeBytes: state.storeBytes,
                        uptimeSeconds: state.uptimeSeconds)
                    session.send(reply(request, body: text, type: "text/plain; version=0.0.4; charset=utf-8"))
                }
            }),
            (health, ClosureCommandHandler { request, session in
                // Load balancers and supervisors read the status; people read the body.
                let stopping = state.isStopping
                session.send(reply(request, status: stopping ? 503 : 200, body: stopping ? "stopping\n" : "serving\n",
                                   type: "text/plain"))
            }),
        ]
    }

    /// What one caller may see.
    struct Access: Sendable {
        /// The token it presented.
        let token: String?
        /// Whether it sees the panels (other modules' tables, such as the tracker's cluster view).
        let panels: Bool
        /// Whether it sees every MQ (`/metrics` with `auth.metrics_open`).
        var everyQueue = false

        /// The MQs of `source` it may see.
        func visible(_ source: (any QueueStatisticsSource)?) -> [QueueStatistics] {
            guard let source else { return [] }
            let all = source.queueStatistics()
            return everyQueue ? all : all.filter { source.mayRead(queue: $0.name, token: token) }
        }
    }

    private static func reply(_ request: Message, status: Int = 200, body: String, type: String) -> Message {
        var reply = request.reply(status: status, body: body, includeMq: false)
        reply.contentType = type
        // The page polls; a cached answer would freeze it.
        reply.headers.set(lowercased: "cache-control", "no-store")
        return reply
    }
}
