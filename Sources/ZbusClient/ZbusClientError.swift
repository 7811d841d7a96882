/// What went wrong talking to a zbus node. Every case says which node, which request, and what to do about it.
public enum ZbusClientError: Error, Sendable, CustomStringConvertible {
    /// A broker address could not be understood.
    case invalidAddress(String, reason: String)
    /// No connection could be made within the connect timeout.
    case connectFailed(address: String, reason: String)
    /// The connection closed while the request waited for its reply. The node may or may not have processed it.
    case connectionClosed(address: String, cmd: String?, id: String?, reason: String?)
    /// No reply arrived within the request timeout. The node may or may not have processed the request.
    case timedOut(address: String, cmd: String?, id: String?, after: Duration)
    /// The client (or its broker, producer or consumer) was closed.
    case clientClosed(address: String)
    /// A request with the same `id` is already waiting for its reply on this connection.
    case duplicateRequestId(String)
    /// The node answered with an error status.
    case rejected(cmd: String, mq: String?, status: Int, body: String)
    /// The node's answer could not be understood.
    case unexpectedReply(cmd: String, reason: String)
    /// A message to route has no `sender`, so there is nobody to route it to.
    case missingSender(id: String?)
    /// The feature is not available yet.
    case unsupported(String)
    /// An HA broker found no broker to send to: the trackers named none (hosting the MQ), or every one failed.
    case noBroker(mq: String?, trackers: String, reason: String)

    /// One line saying what failed, where, and what to do.
    public var description: String {
        switch self {
        case .invalidAddress(let address, let reason):
            return "invalid broker address '\(address)': \(reason) (expected HOST:PORT, for example 127.0.0.1:15555)"
        case .connectFailed(let address, let reason):
            return "cannot connect to zbus at \(address): \(reason) (is the node running and listening there?)"
        case .connectionClosed(let address, let cmd, let id, let reason):
            return "connection to \(address) closed before the reply to \(Self.describe(cmd: cmd, id: id)) arrived"
                + (reason.map { " (\($0))" } ?? "")
                + "; the node may or may not have processed it, retry if the operation is idempotent"
        case .timedOut(let address, let cmd, let id, let after):
            return "no reply from \(address) to \(Self.describe(cmd: cmd, id: id)) within \(after)"
                + "; the node may or may not have processed it (raise the request timeout for slow operations)"
        case .clientClosed(let address):
            return "the client for \(address) is closed; create a new one"
        case .duplicateRequestId(let id):
            return "a request with id '\(id)' is already waiting for its reply on this connection; give each request its own id"
        case .rejected(let cmd, let mq, let status, let body):
            let target = mq.map { " on MQ '\($0)'" } ?? ""
            return "\(cmd)\(target) refused by the node: \(status) \(body)"
        case .unexpectedReply(let cmd, let reason):
            return "unexpected reply to \(cmd): \(reason)"
        case .missingSender(let id):
            return "cannot route a reply to message \(id.map { "'\($0)'" } ?? "without id"): it has no `sender` (route replies to messages a consumer received)"
        case .unsupported(let what):
            return what
        case .noBroker(let mq, let trackers, let reason):
            let target = mq.map { " for MQ '\($0)'" } ?? ""
            return "no broker\(target) to send to via the trackers \(trackers): \(reason)"
                + " (are the trackers and brokers running, and do the brokers list these trackers under `trackers:`?)"
        }
    }

    /// Whether the request certainly never reached the node (so sending it again cannot duplicate it).
    public var requestNeverSent: Bool {
        switch self {
        case .connectFailed, .clientClosed, .invalidAddress, .duplicateRequestId, .unsupported, .noBroker: return true
        default: return false
        }
    }

    /// Whether the failure came from the connection (closed, unreachable or silent) rather than from the node's answer.
    public var isConnectionFailure: Bool {
        switch self {
        case .connectFailed, .connectionClosed, .timedOut, .noBroker: return true
        default: return false
        }
    }

    private static func describe(cmd: String?, id: String?) -> String {
        "`\(cmd ?? "request")`" + (id.map { " (id \($0))" } ?? "")
    }
}
