import NIOCore

/// The first line of a message: a request line or a status line.
///
/// zbus identifies commands by headers, so either form may carry a `cmd`; the form matters only on the wire.
public enum StartLine: Sendable, Equatable {
    /// `METHOD SP uri SP HTTP/1.1`.
    case request(method: String, uri: String)
    /// `HTTP/1.1 SP code SP reason`; a `nil` reason is written from the standard table.
    case status(code: Int, reason: String?)
}

/// One zbus message: an HTTP/1.1 message whose control data sits in extra headers.
///
/// `content-length`, `connection` and `transfer-encoding` are framing, not data: the decoder turns them into ``body``
/// and ``closeRequested`` and the encoder writes them back, so they never appear in ``headers``.
///
/// A value type whose parts live in one shared box, copied on the first write to a shared one (as `Array` does): a
/// message is handed along a dozen times on its way through a node (parser, MQ, store, delivery, worker, reply), and
/// each copy of the parts themselves was a retain and a release of every string, array and buffer in them (about a
/// fifth of a bus call's instructions went to copying messages and their parts).
public struct Message: Sendable {
    /// The parts. Mutated only through ``Message``'s accessors, which make it unique first, so a box reachable from
    /// two messages (or two threads) is never written: hence `@unchecked Sendable`.
    @usableFromInline
    internal final class Parts: @unchecked Sendable {
        @usableFromInline var startLine: StartLine
        @usableFromInline var headers: Headers
        @usableFromInline var body: ByteBuffer?
        @usableFromInline var closeRequested: Bool

        @inlinable
        init(startLine: StartLine, headers: Headers, body: ByteBuffer?, closeRequested: Bool) {
            self.startLine = startLine
            self.headers = headers
            self.body = body
            self.closeRequested = closeRequested
        }

        @inlinable
        func copy() -> Parts {
            Parts(startLine: startLine, headers: headers, body: body, closeRequested: closeRequested)
        }
    }

    @usableFromInline
    internal var parts: Parts
    /// ``acceptedAt`` in the monotonic clock's nanoseconds, 0 for none. Beside the box, not in it: the MQ stamps the
    /// copy of a message it keeps while the producer's copy still shares the box, and a stamp in the box would copy
    /// the whole box for it.
    @usableFromInline
    internal var acceptedAtNanoseconds: UInt64 = 0

    /// Makes ``parts`` this message's own before a write (a copy only when another message shares it).
    @inlinable @inline(__always)
    internal mutating func makeUnique() {
        if !isKnownUniquelyReferenced(&parts) { parts = parts.copy() }
    }

    /// The request line or status line.
    @inlinable
    public var startLine: StartLine {
        _read { yield parts.startLine }
        _modify {
            makeUnique()
            yield &parts.startLine
        }
    }

    /// Every other header, lower-cased.
    @inlinable
    public var headers: Headers {
        _read { yield parts.headers }
        _modify {
            makeUnique()
            yield &parts.headers
        }
    }

    /// The body; `nil` when the message has none.
    @inlinable
    public var body: ByteBuffer? {
        _read { yield parts.body }
        _modify {
            makeUnique()
            yield &parts.body
        }
    }

    /// Whether the sender asked to close the connection after this message (HTTP/1.0 without keep-alive, or
    /// `Connection: close`). On an outgoing message it makes the encoder write `connection: close`.
    @inlinable
    public var closeRequested: Bool {
        get { parts.closeRequested }
        set {
            makeUnique()
            parts.closeRequested = newValue
        }
    }

    /// Creates a request message (`GET /` unless told otherwise).
    public init(method: String = "GET", uri: String = "/", headers: Headers = Headers(), body: ByteBuffer? = nil) {
        parts = Parts(startLine: .request(method: method, uri: uri), headers: headers, body: body, closeRequested: false)
    }

    /// Creates a response message with `status` and an optional reason phrase.
    public init(status: Int, reason: String? = nil, headers: Headers = Headers(), body: ByteBuffer? = nil) {
        parts = Parts(startLine: .status(code: status, reason: reason), headers: headers, body: body, closeRequested: false)
    }

    /// Creates a message from its parts (by default no headers and no body); `closeRequested` starts `false` and
    /// ``acceptedAt`` `nil`.
    @inlinable
    public init(startLine: StartLine, headers: Headers = Headers(), body: ByteBuffer? = nil) {
        parts = Parts(startLine: startLine, headers: headers, body: body, closeRequested: false)
    }

    /// The status code, or `nil` for a request-line message.
    public var status: Int? {
        get {
            if case .status(let code, _) = startLine { return code }
            return nil
        }
        set {
            if let newValue { startLine = .status(code: newValue, reason: nil) } else { startLine = .request(method: "GET", uri: "/") }
        }
    }

    /// The request string (URI) of a request-line message, or `nil` for a status-line message.
    public var uri: String? {
        if case .request(_, let uri) = startLine { return uri }
        return nil
    }

    /// The body as UTF-8 text (empty when there is no body).
    public var bodyString: String {
        guard let body else { return "" }
        return String(buffer: body)
    }

    /// When an MQ of this node accepted the message (the monotonic clock), or `nil`: stamped by a point-to-point MQ
    /// on every produce (replacing a stamp from another MQ), kept while the message is delivered in-process, and
    /// never written to the wire or the store. What lets the node's own worker tell how long a request waited for it:
    /// a bus adapter answers a request that waited past its `queue_timeout` with 504 at once, rather than calling the
    /// service for a caller whose time is up.
    @inlinable
    public var acceptedAt: NIODeadline? {
        get { acceptedAtNanoseconds == 0 ? nil : NIODeadline.uptimeNanoseconds(acceptedAtNanoseconds) }
        set { acceptedAtNanoseconds = newValue.map { max(1, $0.uptimeNanoseconds) } ?? 0 }
    }

    /// Replaces the body with the UTF-8 bytes of `text`.
    public mutating func setBody(_ text: String) {
        self.body = ByteBuffer(string: text)
    }
}

extension Message {
    /// `cmd`: the command.
    public var cmd: String? { get { headers.value(indexed: .cmd) } set { headers.set(lowercased: HeaderName.cmd, newValue) } }
    /// `mq`: the MQ name.
    public var mq: String? { get { headers.value(indexed: .mq) } set { headers.set(lowercased: HeaderName.mq, newValue) } }
    /// `id`: the message id.
    public var id: String? { get { headers.value(indexed: .id) } set { headers.set(lowercased: HeaderName.id, newValue) } }
    /// `rawid`: the producer's id on a delivered message.
    public var rawId: String? { get { headers.value(indexed: .rawId) } set { headers.set(lowercased: HeaderName.rawId, newValue) } }
    /// `sender`: the session id of the sending connection.
    public var sender: String? { get { headers.value(indexed: .sender) } set { headers.set(lowercased: HeaderName.sender, newValue) } }
    /// `recver`: the target session of a `route`.
    public var recver: String? { get { headers.value(indexed: .recver) } set { headers.set(lowercased: HeaderName.recver, newValue) } }
    /// `server`: the node that received the message.
    public var server: String? { get { headers.value(indexed: .server) } set { headers.set(lowercased: HeaderName.server, newValue) } }
    /// `remote-addr`: the peer address of the sending connection.
    public var remoteAddr: String? { get { headers.value(indexed: .remoteAddr) } set { headers.set(lowercased: HeaderName.remoteAddr, newValue) } }
    /// `topic`: pub/sub topic(s).
    public var topic: String? { get { headers.value(indexed: .topic) } set { headers.set(lowercased: HeaderName.topic, newValue) } }
    /// `encoding`: the body charset.
    public var encoding: String? { get { headers.value(lowercased: HeaderName.encoding) } set { headers.set(lowercased: HeaderName.encoding, newValue) } }
    /// `key`: the dedupe key.
    public var key: String? { get { headers.value(indexed: .key) } set { headers.set(lowercased: HeaderName.key, newValue) } }
    /// `key_group`: the group of the dedupe key.
    public var keyGroup: String? { get { headers.value(indexed: .keyGroup) } set { headers.set(lowercased: HeaderName.keyGroup, newValue) } }
    /// `token`: the access token presented by a producer or consumer.
    public var token: String? { get { headers.value(indexed: .token) } set { headers.set(lowercased: HeaderName.token, newValue) } }
    /// `timeout`: a consume's server-side wait limit in milliseconds, as sent.
    public var timeout: String? { get { headers.value(indexed: .timeout) } set { headers.set(lowercased: HeaderName.timeout, newValue) } }
    /// `http-method`: the method a bus adapter uses for the request it sends its service.
    public var httpMethod: String? { get { headers.value(indexed: .httpMethod) } set { headers.set(lowercased: HeaderName.httpMethod, newValue) } }
    /// `path`: the path (and query) a bus adapter requests from its service.
    public var httpPath: String? { get { headers.value(indexed: .httpPath) } set { headers.set(lowercased: HeaderName.httpPath, newValue) } }
    /// `content-type`: the body's media type.
    public var contentType: String? { get { headers.value(lowercased: HeaderName.contentType) } set { headers.set(lowercased: HeaderName.contentType, newValue) } }

    /// `ack`: whether the sender wants a reply. Absent means `true`; only `1` and `true` (any case) mean `true`.
    public var ack: Bool {
        get {
            guard let value = headers.value(indexed: .ack) else { return true }
            // Lower-cased only when it could be "true": `ack: 0` rides on every bus call, and lower-casing makes a
            // string.
            return value == "1" || (value.utf8.count == 4 && value.lowercased() == "true")
        }
        set { headers.set(lowercased: HeaderName.ack, newValue ? "1" : "0") }
    }

    /// Builds a reply to this message: a status-line message carrying this message's `id` (if any).
    ///
    /// - Parameters:
    ///   - status: the status code.
    ///   - body: the body text, or `nil` for none.
    ///   - mq: when `true` (the default), the reply also carries this message's `mq` header, as zbus replies do.
    public func reply(status: Int, body: String? = nil, includeMq: Bool = true) -> Message {
        var reply = Message.reply(status: status, body: body, id: self.id, mq: includeMq ? self.mq : nil)
        reply.closeRequested = self.closeRequested
        return reply
    }

    /// Builds a reply from the request's `id` and `mq` alone, for code that keeps those rather than the request.
    public static func reply(status: Int, body: String?, id: String?, mq: String?) -> Message {
        var headers = Headers()
        headers.reserveCapacity(2)
        if let mq { headers.appendUnchecked(name: HeaderName.mq, value: mq) }
        if let id { headers.appendUnchecked(name: HeaderName.id, value: id) }
        return Message(status: status, headers: headers, body: body.map { ByteBuffer(string: $0) })
    }
}
