/// The node's `auth` section: named tokens, each with permissions per MQ name pattern, and what a request without a
/// token may do. With no `auth` section the node keeps zbus 6.3's model (an MQ's `access_token`, the `register_token`).
///
/// ```yaml
/// auth:
///   metrics_open: false          # /metrics without a token (default false); /health is always open
///   anonymous: {}                # what a request without a token may do (default: nothing)
///   tokens:
///     - name: orders-app         # shown in logs and refusals instead of the secret
///       secret_file: secrets/orders-app.token    # or `sha256: <64 hex digits>`, or `secret: ...`
///       produce: ["orders.*"]
///       consume: ["replies.*"]
///     - name: ops
///       sha256: 5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8
///       admin: ["*"]
///       tracker: true
/// ```
///
/// Deny by default: a token may do only what its lists grant. Tokens are compared by their SHA-256 digest, so a
/// configured secret is never compared byte by byte and the YAML may carry only the digest.
public final class AccessPolicy: Sendable {
    /// One configured token: its name and grants (never its secret).
    public struct Token: Sendable {
        /// The name shown in logs and refusals.
        public let name: String
        /// What it may do.
        public let grants: Grants
    }

    /// The tokens by the SHA-256 digest (hex) of their secret.
    private let tokensByDigest: [String: Token]
    /// What a request without a token may do.
    public let anonymous: Grants
    /// Whether `/metrics` answers without a token (it then lists every MQ).
    public let metricsOpen: Bool
    /// The token this node presents to the trackers it reports to (`report_token` / `report_token_file`), if any.
    public let reportToken: String?

    /// The configured tokens' names, in no particular order (for the start-up log line).
    public var tokenNames: [String] { tokensByDigest.values.map(\.name).sorted() }

    /// Creates a policy from resolved tokens.
    ///
    /// - Parameters:
    ///   - tokens: each token's secret and its name and grants.
    ///   - anonymous: what a request without a token may do.
    ///   - metricsOpen: whether `/metrics` needs no token.
    ///   - reportToken: the token presented to trackers.
    public init(tokens: [(secret: String, token: Token)], anonymous: Grants = Grants(), metricsOpen: Bool = false,
                reportToken: String? = nil) {
        var byDigest: [String: Token] = [:]
        for entry in tokens { byDigest[TokenDigest.hex(entry.secret)] = entry.token }
        self.tokensByDigest = byDigest
        self.anonymous = anonymous
        self.metricsOpen = metricsOpen
        self.reportToken = reportToken
    }

    init(tokensByDigest: [String: Token], anonymous: Grants, metricsOpen: Bool, reportToken: String?) {
        self.tokensByDigest = tokensByDigest
        self.anonymous = anonymous
        self.metricsOpen = metricsOpen
        self.reportToken = reportToken
    }

    /// Who presents `token` (`nil` or empty: the anonymous caller).
    public func caller(token: String?) -> Caller {
        guard let token, !token.isEmpty else { return Caller(kind: .anonymous, grants: anonymous) }
        guard let known = tokensByDigest[TokenDigest.hex(token)] else { return Caller(kind: .unknown, grants: Grants()) }
        return Caller(kind: .token(known.name), grants: known.grants)
    }

    /// Who presents `token`, remembered on `session` (called on its event loop): a connection presents the same token
    /// request after request, so the digest is computed once per connection and token.
    public func caller(token: String?, session: Session) -> Caller {
        if session.isTrusted { return Caller(kind: .inProcess, grants: .everything) }
        if let cached = session.accessCache.caller, cached.token == token { return cached.caller }
        let resolved = caller(token: token)
        session.accessCache = SessionAccessCache(caller: (token, resolved))
        return resolved
    }

    /// What `token` may do on `mq`, remembered on `session` for the last MQ asked about (called on its event loop):
    /// the produce and consume hot paths ask about the same MQ with the same token again and again.
    public func permissions(token: String?, on mq: String, session: Session) -> Permissions {
        if let cached = session.accessCache.caller, cached.token == token, let last = session.accessCache.lastMQ,
            last.name == mq
        {
            return last.permissions
        }
        let caller = caller(token: token, session: session)
        let permissions = caller.grants.permissions(on: mq)
        session.accessCache.lastMQ = (mq, permissions)
        return permissions
    }
}

/// The caller of a request, as the `auth` section sees it.
public struct Caller: Sendable {
    /// How the caller identified itself.
    public enum Kind: Sendable, Equatable {
        /// No token.
        case anonymous
        /// A token the `auth` section does not know (it may still be an MQ's `access_token`).
        case unknown
        /// The named token.
        case token(String)
        /// The process's own code, connected in-process (a module's workers, an embedding program).
        case inProcess
    }

    /// How the caller identified itself.
    public let kind: Kind
    /// What it may do.
    public let grants: Grants

    /// The caller as logs and refusals name it; never the secret.
    public var label: String {
        switch kind {
        case .anonymous: return "no token (anonymous)"
        case .unknown: return "an unknown token"
        case .token(let name): return "token '\(name)'"
        case .inProcess: return "an in-process client"
        }
    }
}

/// What a session remembers of its last access decision (see ``AccessPolicy/permissions(token:on:session:)``).
public struct SessionAccessCache: Sendable {
    var caller: (token: String?, caller: Caller)?
    var lastMQ: (name: String, permissions: Permissions)?

    init(caller: (token: String?, caller: Caller)? = nil) {
        self.caller = caller
    }
}
