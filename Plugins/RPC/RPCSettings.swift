import ZbusClient
import ZbusKernel
import ZbusRPC

/// The `rpc` module's section, checked.
///
/// ```yaml
/// - module: rpc
///   codec: json                  # default codec of the services: json | raw | a codec another module contributes
///   services:
///     - service: calc            # a service of the module's catalogue
///       mq: Calc                 # MQ-RPC: consume this MQ (created with mode MQ|RPC = 9 if missing)
///       broker: 127.0.0.1:15555  # the node holding the MQ (default: this node, which then needs the mq module)
///       broker_tls:              # connect to `broker` in TLS (its `node.tls.listen` port): true (system CAs) or
///         ca_file: ca.pem        #   ca_file, cert_file, key_file, server_name, verify_hostname (docs/tls.md)
///       workers: 8               # consumer connections (default 4)
///       token: secret            # the MQ's access token (optional)
///       register_token: admin    # the broker's register_token, to create the MQ (optional)
///       poll_timeout: 10s        # how long each consume waits on the node (default 10s)
///       queue_timeout: 5s        # answer a request that waited longer than this for a worker with an error, unrun
///                                #   (default: none; needs the MQ on this node, no `broker`)
///       direct: 127.0.0.1:15557  # direct RPC: listen here (port 0: any free port, logged at start)
///       direct_tls: true         # direct RPC in TLS: `true` uses node.tls's certificate, key and ca_file, or
///                                #   { cert_file, key_file, ca_file } of its own (docs/tls.md)
///       codec: raw               # this service's codec (default: the module's)
/// ```
struct RPCSettings: Sendable {
    static let keys = ["codec", "services"]
    static let serviceKeys = ["service", "mq", "broker", "broker_tls", "workers", "token", "register_token", "poll_timeout", "queue_timeout", "direct", "direct_tls", "codec"]

    /// One hosted service.
    struct Service: Sendable {
        let name: String
        let processor: RpcProcessor
        let mq: String?
        let broker: HostAndPort?
        /// TLS for the connections to `broker`; `nil` for plain TCP.
        let brokerTLS: ClientTLS?
        let workers: Int
        let token: String?
        let registerToken: String?
        let pollTimeoutMilliseconds: Int
        /// How long a request may wait in the MQ for a worker before it is answered with an error instead of run;
        /// `nil` for no limit.
        let queueTimeout: Duration?
        let direct: HostAndPort?
        /// TLS for the direct port: `nil` plain, ``DirectTLS/node`` the node's files, or files of its own.
        let directTLS: DirectTLS?
        /// Where `direct_tls` was given, to locate a node without `node.tls`.
        let directTLSLocation: ConfigValue?
        let codec: String
        /// Where the codec was named, to locate an unknown codec found at start.
        let codecLocation: ConfigValue
        /// Where the MQ was named, to locate a missing `mq` module.
        let mqLocation: ConfigValue
    }

    /// Where a direct RPC port gets its certificate.
    enum DirectTLS: Sendable {
        /// `direct_tls: true`: the node's `node.tls` files.
        case node
        /// `direct_tls: { cert_file, key_file, ca_file }`.
        case files(ServerTLSFiles)
    }

    let services: [Service]

    /// The services whose MQ lives on this node (no `broker`): they need its `mq` module.
    var onThisNode: [Service] { services.filter { $0.mq != nil && $0.broker == nil } }

    init(_ config: ConfigSection, catalog: [String: RpcProcessor]) throws(ConfigError) {
        let defaultCodec = try config.string("codec", default: "json")
        let defaultLocation = config["codec"] ?? config.value
        guard let list = config["services"] else {
            services = []
            return
        }
        guard case .sequence(let items) = list.kind else {
            throw list.error("expected a list of services, each with `service` and `mq` and/or `direct`, found \(list.typeName)")
        }
        let known = catalog.keys.sorted().joined(separator: ", ")
        var services: [Service] = []
        for item in items {
            let entry = try ConfigSection(item, allowedKeys: Self.serviceKeys)
            guard let name = try entry.string("service") else {
                throw item.error("missing key 'service': the service to host; available: \(known)")
            }
            guard let processor = catalog[name] else {
                throw (entry["service"] ?? item).error("unknown service '\(name)'; available: \(known)")
            }
            let mq = try entry.string("mq")
            let broker = try entry.address("broker")
            let direct = try entry.address("direct")
            if mq == nil && direct == nil {
                throw item.error("service '\(name)' is hosted nowhere: give `mq` (MQ-RPC), `direct` (a direct RPC address) or both")
            }
            if let mq, mq.isEmpty { throw (entry["mq"] ?? item).error("the MQ name is empty") }
            let brokerTLS = try entry.clientTLS("broker_tls")
            if brokerTLS != nil && broker == nil {
                throw (entry["broker_tls"] ?? item).error("`broker_tls` is how to reach `broker`; add `broker: HOST:PORT` or remove it")
            }
            var directTLS: DirectTLS?
            if let value = entry["direct_tls"] {
                if case .scalar = value.kind {
                    directTLS = try entry.bool("direct_tls") == true ? .node : nil
                } else {
                    directTLS = .files(try ConfigSection(value, allowedKeys: ["cert_file", "key_file", "ca_file"]).serverTLSFiles())
                }
                if directTLS != nil && direct == nil {
                    throw value.error("`direct_tls` is how `direct` listens; add `direct: HOST:PORT` or remove it")
                }
            }
            let queueTimeout = try entry.milliseconds("queue_timeout", in: 1...3_600_000).map { Duration.milliseconds($0) }
            if let location = entry["queue_timeout"] {
                if mq == nil {
                    throw location.error("`queue_timeout` limits how long an MQ-RPC request waits in its MQ; add `mq: NAME` or remove it")
                }
                if broker != nil {
                    throw location.error("`queue_timeout` needs the MQ on this node: a request consumed from another node's MQ does not "
                        + "carry when that MQ accepted it; remove `broker` (host the service on the broker) or `queue_timeout`")
                }
            }
            if broker != nil && mq == nil {
                throw (entry["broker"] ?? item).error("`broker` is where the MQ of an MQ-RPC service lives; add `mq: NAME` or remove it")
            }
            services.append(Service(
                name: name, processor: processor, mq: mq, broker: broker, brokerTLS: brokerTLS,
                workers: try entry.int("workers", in: 1...1024) ?? 4,
                token: try entry.string("token"),
                registerToken: try entry.string("register_token"),
                pollTimeoutMilliseconds: try entry.milliseconds("poll_timeout", in: 100...600_000) ?? 10_000,
                queueTimeout: queueTimeout,
                direct: direct, directTLS: directTLS, directTLSLocation: entry["direct_tls"],
                codec: try entry.string("codec") ?? defaultCodec,
                codecLocation: entry["codec"] ?? defaultLocation,
                mqLocation: entry["mq"] ?? item))
        }
        self.services = services
    }
}
