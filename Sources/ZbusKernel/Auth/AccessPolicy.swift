import Atomics
import NIOConcurrencyHelpers

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
///
/// The node shares one policy with its modules for its whole life; a reload (SIGHUP, ``Node/reloadAuth(file:)``)
/// swaps its rules whole (``adopt(_:)``), so that every request decided after the swap sees only the new ones.
public final class AccessPolicy: Sendable {
    /// One configured token: its name and grants (never its secret).
    public struct Token: Sendable {
        /// The name shown in logs and refusals.
        public let name: String
        /// What it may do.
        public let grants: Grants
    }

    /// What one `auth` section says; a reload replaces it whole.
    private final class Rules: Sendable {
        /// The tokens by the SHA-256 digest (hex) of their secret.
        let tokensByDigest: [String: Token]
        let anonymous: Grants
        let metricsOpen: Bool
        let reportToken: String?

        init(tokensByDigest: [String: Token], anonymous: Grants, metricsOpen: Bool, reportToken: String?) {
            self.tokensByDigest = tokensByDigest
            self.anonymous = anonymous
            self.metricsOpen = metricsOpen
            self.reportToken = reportToken
        }
    }

    /// The rules in force, read under the lock only when a session's cache cannot answer.
    private let rules: NIOLockedValueBox<Rules>
    /// Counts the swaps of ``rules``: a session's cached decision counts only if it was made under the current count,
    /// which costs the produce and consume paths one atomic load (no lock) per decision.
    private let generation = ManagedAtomic<UInt64>(0)

    private var current: Rules { rules.withLockedValue { $0 } }

    /// What a request without a token may do.
    public var anonymous: Grants { current.anonymous }
    /// Whether `/metrics` answers without a token (it then lists every MQ).
    public var metricsOpen: Bool { current.metricsOpen }
    /// The token this node presents to the trackers it reports to (`report_token` / `report_token_file`), if any.
    public var reportToken: String? { current.reportToken }

    /// The configured tokens' names, sorted (for the start-up and reload log lines).
    public var tokenNames: [String] { current.tokensByDigest.values.map(\.name).sorted() }

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
        self.rules = NIOLockedValueBox(Rules(tokensByDigest: byDigest, anonymous: anonymous, metricsOpen: metricsOpen, reportToken: reportToken))
    }

    init(tokensByDigest: [String: Token], anonymous: Grants, metricsOpen: Bool, reportToken: String?) {
        self.rules = NIOLockedValueBox(Rules(tokensByDigest: tokensByDigest, anonymous: anonymous, metricsOpen: metricsOpen,
                                             reportToken: reportToken))
    }

    /// Takes the rules of `other` (a policy just read from the node file) in place of this one's, atomically: a
    /// decision made after this returns uses only the new tokens and grants, also on connections that are open (their
    /// cached decisions lapse), and the modules holding this policy need not be told.
    public func adopt(_ other: AccessPolicy) {
        let fresh = other.current
        rules.withLockedValue { $0 = fresh }
        // After the swap: a session that reads the new count finds the new rules under the lock.
        generation.wrappingIncrement(ordering: .releasing)
    }

    /// Who presents `token` (`nil` or empty: the anonymous caller).
    public func caller(token: String?) -> Caller {
        Self.caller(token: token, rules: current)
    }

    private static func caller(token: String?, rules: Rules) -> Caller {
        guard let token, !token.isEmpty else { return Caller(kind: .anonymous, grants: rules.anonymous) }
        guard let known = rules.tokensByDigest[TokenDigest.hex(token)] else { return Caller(kind: .unknown, grants: Grants()) }
        return Caller(kind: .token(known.name), grants: known.grants)
    }

    /// Who presents `token`, remembered on `session` (called on its event loop): a connection presents the same token
    /// request after request, so the digest is computed once per connection and token (and again after a reload).
    public func caller(token: String?, session: Session) -> Caller {
        if session.isTrusted { return Caller(kind: .inProcess, grants: .everything) }
        let generation = self.generation.load(ordering: .acquiring)
        if let cached = session.accessCache.caller, cached.token == token, session.accessCache.generation == generation {
            return cached.caller
        }
        let resolved = caller(token: token)
        session.accessCache = SessionAccessCache(caller: (token, resolved), generation: generation)
        return resolved
    }

    /// What `token` may do on `mq`, remembered on `session` for the last MQ asked about (called on its event loop):
    /// the produce and consume hot paths ask about the same MQ with the same token again and again.
    public func permissions(token: String?, on mq: String, session: Session) -> Permissions {
        if let cached = session.accessCache.caller, cached.token == token, let last = session.accessCache.lastMQ,
            last.name == mq, session.accessCache.generation == generation.load(ordering: .acquiring)
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
    /// The policy's reload count when ``caller`` was resolved: after a reload the cache no longer counts.
    var generation: UInt64 = 0

    init(caller: (token: String?, caller: Caller)? = nil, generation: UInt64 = 0) {
        self.caller = caller
        self.generation = generation
    }
}
