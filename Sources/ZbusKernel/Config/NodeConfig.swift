import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The typed form of a node file (`zbus.yaml`).
///
/// ```yaml
/// node:
///   name: broker-1
///   listen: 127.0.0.1:15555
///   store: ./data
/// trackers: [127.0.0.1:16666]
/// modules:
///   - module: mq
///     fsync: interval
/// ```
public struct NodeConfig: Sendable {
    /// The node's name (logs, monitor).
    public var name: String = "zbus"
    /// The address to listen on; port 0 asks the OS for a free port.
    public var listen = HostAndPort(host: "127.0.0.1", port: 15555)
    /// Whether the node listens on ``listen`` in plain TCP; `false` (`node.listen: none`) for a node that listens in
    /// TLS only (then ``tls`` is required).
    public var listensPlain = true
    /// The TLS port (`node.tls`), beside the plain one or alone; `nil` for none.
    public var tls: NodeTLSConfig?
    /// The address stamped into `server` headers and reported to trackers; defaults to the bound address.
    public var advertise: String?
    /// The store directory.
    public var store: String = "./data"
    /// Log level.
    public var logLevel: Logger.Level = .info
    /// Decoder limits.
    public var limits: MessageLimits = .default
    /// Connection, timeout and buffer limits (the rest of `node.limits`).
    public var connectionLimits: ConnectionLimits = .default
    /// Event loop threads; 0 means one per core.
    public var threads: Int = 0
    /// Trackers to report to.
    public var trackers: [HostAndPort] = []
    /// The modules to load, in order, each with its own section.
    public var modules: [ModuleConfig] = []
    /// Access control (`auth:`): `nil` keeps zbus 6.3's model of an MQ's `access_token` and the `register_token`.
    public var auth: AccessPolicy?
    /// Where this configuration came from, for error messages.
    public var source: String = "<defaults>"

    /// The keys allowed at the top level of a node file.
    public static let topLevelKeys = ["node", "trackers", "modules", "auth"]
    /// The keys allowed under `node:`.
    public static let nodeKeys = ["name", "listen", "advertise", "store", "log_level", "limits", "threads", "tls"]
    /// The keys allowed under `node.limits:`.
    public static let limitKeys = [
        "max_header_bytes", "max_body_bytes", "max_connections", "max_connections_per_address", "idle_timeout",
        "header_timeout", "max_output_bytes", "max_buffered_bytes",
    ]

    /// A configuration with every default and no module.
    public init() {}

    /// Reads and validates a node file.
    ///
    /// - Throws: ``ConfigError`` when the file cannot be read, is not YAML, or breaks the schema.
    public static func load(file path: String) throws(ConfigError) -> NodeConfig {
        let text: String
        do {
            text = try readTextFile(path)
        } catch {
            throw ConfigError(file: path, keyPath: "", message: "cannot read the file: \(error)")
        }
        return try parse(yaml: text, file: path)
    }

    /// Reads the `auth` section of a node file again, for a reload (SIGHUP, ``Node/reloadAuth(file:)``): only the top
    /// level's keys and the `auth` section are checked, since nothing else is reloaded (`zbus check-config` checks the
    /// whole file).
    ///
    /// - Returns: the policy and the section's value (to locate errors about it), or `nil` when the file has no
    ///   `auth` section.
    /// - Throws: ``ConfigError`` naming the file, line and key: unreadable file, bad YAML, a bad `auth` section or an
    ///   unreadable `secret_file`.
    public static func loadAuth(file path: String) throws(ConfigError) -> (policy: AccessPolicy, section: ConfigValue)? {
        let text: String
        do {
            text = try readTextFile(path)
        } catch {
            throw ConfigError(file: path, keyPath: "", message: "cannot read the file: \(error)")
        }
        let root = try ConfigValue.parse(yaml: text, file: path)
        if case .null = root.kind { return nil }
        let top = try ConfigSection(root, allowedKeys: topLevelKeys)
        guard let section = top["auth"], let policy = try parseAuth(top, file: path) else { return nil }
        return (policy, section)
    }

    /// The `auth` section of `top`, if any; relative `secret_file`s start at the node file's directory.
    private static func parseAuth(_ top: ConfigSection, file: String) throws(ConfigError) -> AccessPolicy? {
        guard let auth = try top.section("auth", allowedKeys: AccessPolicy.keys) else { return nil }
        let directory = file.contains("/") ? String(file[..<file.lastIndex(of: "/")!]) : "."
        return try AccessPolicy.parse(auth, directory: directory)
    }

    /// Parses and validates node YAML.
    ///
    /// - Parameters:
    ///   - yaml: the document.
    ///   - file: the name used in error messages.
    public static func parse(yaml: String, file: String) throws(ConfigError) -> NodeConfig {
        let root = try ConfigValue.parse(yaml: yaml, file: file)
        if case .null = root.kind {
            throw root.error("the file is empty; expected at least `node:` or `modules:`")
        }
        let top = try ConfigSection(root, allowedKeys: topLevelKeys)
        var config = NodeConfig()
        config.source = file

        if let node = try top.section("node", allowedKeys: nodeKeys) {
            config.name = try node.string("name", default: config.name)
            if try node.string("listen")?.lowercased() == "none" {
                config.listensPlain = false
            } else {
                config.listen = try node.address("listen") ?? config.listen
            }
            if let tls = try node.section("tls", allowedKeys: NodeTLSConfig.keys) {
                config.tls = try NodeTLSConfig.parse(tls)
            }
            if !config.listensPlain, config.tls == nil, let listen = node["listen"] {
                throw listen.error("`none` leaves the node without a port; add `node.tls` (a TLS port) or give HOST:PORT")
            }
            config.advertise = try node.string("advertise")
            config.store = try node.string("store", default: config.store)
            config.logLevel = try node.logLevel("log_level") ?? config.logLevel
            config.threads = try node.int("threads", in: 0...256) ?? config.threads
            if let limits = try node.section("limits", allowedKeys: limitKeys) {
                config.limits.maxHeaderBytes = try limits.byteSize("max_header_bytes", in: 1024...(16 << 20)) ?? config.limits.maxHeaderBytes
                config.limits.maxBodyBytes = try limits.byteSize("max_body_bytes", in: 0...(1 << 31)) ?? config.limits.maxBodyBytes
                var connection = config.connectionLimits
                connection.maxConnections = try limits.int("max_connections", in: 1...1_000_000) ?? connection.maxConnections
                connection.maxConnectionsPerAddress = try limits.int("max_connections_per_address", in: 1...1_000_000)
                    ?? connection.maxConnectionsPerAddress
                connection.idleTimeoutMilliseconds = try limits.milliseconds("idle_timeout", in: 0...(7 * 86_400_000))
                    ?? connection.idleTimeoutMilliseconds
                connection.headerTimeoutMilliseconds = try limits.milliseconds("header_timeout", in: 0...3_600_000)
                    ?? connection.headerTimeoutMilliseconds
                connection.maxOutputBytes = try limits.byteSize("max_output_bytes", in: (64 << 10)...(1 << 40))
                    ?? connection.maxOutputBytes
                connection.maxBufferedBytes = try limits.byteSize("max_buffered_bytes", in: (1 << 20)...(1 << 40))
                    ?? connection.maxBufferedBytes
                config.connectionLimits = connection
            }
        }

        config.auth = try parseAuth(top, file: file)

        if let trackers = top["trackers"] {
            guard case .sequence(let items) = trackers.kind else {
                throw trackers.error("expected a list of host:port, found \(trackers.typeName)")
            }
            for item in items {
                guard case .scalar(let text) = item.kind else { throw item.error("expected host:port, found \(item.typeName)") }
                do throws(HostAndPort.ParseError) {
                    config.trackers.append(try HostAndPort(parsing: text))
                } catch {
                    throw item.error(error.description)
                }
            }
        }

        if let modules = top["modules"] {
            guard case .sequence(let items) = modules.kind else {
                throw modules.error("expected a list of `- module: NAME` entries, found \(modules.typeName)")
            }
            for item in items {
                guard case .mapping(let entries) = item.kind else {
                    throw item.error("expected a mapping with a `module:` key, found \(item.typeName)")
                }
                guard let nameValue = entries.first(where: { $0.key == "module" })?.value,
                    case .scalar(let name) = nameValue.kind, !name.isEmpty
                else {
                    throw item.error("missing `module: NAME`")
                }
                if config.modules.contains(where: { $0.name == name }) {
                    throw nameValue.error("module '\(name)' is listed twice")
                }
                config.modules.append(ModuleConfig(name: name, value: item))
            }
        }
        return config
    }
}

/// One entry of `modules:`: the module name and its whole section (including the `module:` key itself).
public struct ModuleConfig: Sendable {
    /// The module name, as registered in the ``PluginRegistry``.
    public let name: String
    /// The section, for location and typed access.
    public let value: ConfigValue

    /// Creates an entry; `value` defaults to a section holding only `module: name`.
    public init(name: String, value: ConfigValue? = nil) {
        self.name = name
        self.value = value ?? ConfigValue(kind: .mapping([("module", ConfigValue(kind: .scalar(name), file: "<code>", keyPath: "module", line: nil, column: nil))]),
                                          file: "<code>", keyPath: "modules", line: nil, column: nil)
    }
}

/// Reads a whole file as UTF-8 text with POSIX calls (keeps Foundation out of the kernel's hot dependencies).
func readTextFile(_ path: String) throws(FileReadError) -> String {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { throw FileReadError(errno: errno) }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if count < 0 {
            if errno == EINTR { continue }
            throw FileReadError(errno: errno)
        }
        if count == 0 { break }
        bytes.append(contentsOf: chunk[0..<count])
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// An `errno` from reading a file, described with `strerror`.
struct FileReadError: Error, CustomStringConvertible {
    let errno: Int32
    var description: String { String(cString: strerror(errno)) }
}
