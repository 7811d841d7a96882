/// The header names of the zbus 6 protocol (all lower-case, as they travel on the wire).
public enum HeaderName {
    /// The command: `produce`, `consume`, `route`, `create_mq`, ...
    public static let cmd = "cmd"
    /// The MQ name.
    public static let mq = "mq"
    /// The message id, set by clients and echoed on replies.
    public static let id = "id"
    /// The producer's id, set when a message is delivered to a consumer.
    public static let rawId = "rawid"
    /// The session id of the connection a message came from; stamped by the node.
    public static let sender = "sender"
    /// The target session of a `route`.
    public static let recver = "recver"
    /// The address of the node that received a message; stamped by the node.
    public static let server = "server"
    /// The peer address (`ip:port`) a message came from; stamped by the node.
    public static let remoteAddr = "remote-addr"
    /// Pub/sub topic(s): a comma-separated list on subscribe, one topic on publish.
    public static let topic = "topic"
    /// Whether a produce (or key command) wants a reply; absent means yes.
    public static let ack = "ack"
    /// The headers that address the node a message is sent to rather than whoever the message is for (`cmd`, `ack`):
    /// a broker that stores or forwards a message leaves them out
    /// (``MessageSerializer/writeHead(_:into:omittingNodeHeaders:)``).
    public static let nodeHeaders = [cmd, ack]
    /// The body charset (RPC).
    public static let encoding = "encoding"
    /// The dedupe key of a produce.
    public static let key = "key"
    /// The group of a dedupe key.
    public static let keyGroup = "key_group"
    /// The master MQ of a slave MQ being created.
    public static let masterMq = "master_mq"
    /// The access token of the master MQ.
    public static let masterToken = "master_token"
    /// The name of the MQ to create or remove.
    public static let mqName = "mq_name"
    /// The mode bits of the MQ to create.
    public static let mqMode = "mq_mode"
    /// The access token of the MQ to create.
    public static let accessToken = "access_token"
    /// The node's registration token for administrative commands.
    public static let registerToken = "register_token"
    /// The access token presented by a producer or consumer.
    public static let token = "token"
    /// An application id (read, never checked).
    public static let appId = "appid"
    /// The body's media type.
    public static let contentType = "content-type"
    /// `http-method`: the method a bus adapter uses for the request it sends its service.
    public static let httpMethod = "http-method"
    /// `path`: the path (and query) a bus adapter requests from its service.
    public static let httpPath = "path"
    /// A status carried in a header by clients that route replies (converted back into the status line by `route`).
    public static let replyCode = "reply_code"
    /// Server-side wait limit of a `consume`, in milliseconds.
    public static let timeout = "timeout"
    /// Declared by 6.3.0 but unused.
    public static let subCmd = "sub_cmd"
    /// Declared by 6.3.0 but unused.
    public static let window = "window"
}
