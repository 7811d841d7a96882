import ZbusTLS

/// The node's TLS port: `node.tls` in the node file.
///
/// ```yaml
/// node:
///   listen: 127.0.0.1:15555        # or `none` for a node that listens in TLS only
///   tls:
///     listen: 0.0.0.0:15556
///     cert_file: /etc/zbus/server.pem
///     key_file: /etc/zbus/server.key
///     ca_file: /etc/zbus/clients-ca.pem   # optional: client certificates required and verified
///     client:                              # optional: tracker links connect in TLS (see ``ClientTLSSettings``)
///       ca_file: /etc/zbus/ca.pem
/// ```
public struct NodeTLSConfig: Sendable {
    /// The TLS port's address; port 0 asks the OS for a free port.
    public var listen: HostAndPort
    /// The certificate, key and optional client CA files; read at start and again at each reload (SIGHUP).
    public var files: ServerTLSFiles
    /// How the node's own outgoing links (to trackers) use TLS; `nil` connects them in plain TCP.
    public var client: ClientTLS?

    /// A TLS port at `listen` with these files, and plain tracker links.
    public init(listen: HostAndPort, files: ServerTLSFiles, client: ClientTLS? = nil) {
        self.listen = listen
        self.files = files
        self.client = client
    }

    /// The keys allowed under `node.tls:`.
    public static let keys = ["listen", "cert_file", "key_file", "ca_file", "client"]

    /// Parses `node.tls` and reads its files, so that `zbus check-config` and the start report a bad certificate or
    /// key at its key.
    static func parse(_ section: ConfigSection) throws(ConfigError) -> NodeTLSConfig {
        guard let listen = try section.address("listen") else {
            throw section.value.error("missing `listen: HOST:PORT` (the TLS port)")
        }
        return NodeTLSConfig(listen: listen, files: try section.serverTLSFiles(), client: try section.clientTLS("client"))
    }
}

/// The keys of a client-side TLS section (`node.tls.client`, a module's `broker_tls`, ...).
public enum ClientTLSSettings {
    /// The keys allowed in a client TLS section.
    public static let keys = ["ca_file", "cert_file", "key_file", "server_name", "verify_hostname"]
}

extension ConfigSection {
    /// A client TLS section: `true` (trust the system's CAs), `false` (plain), or a mapping of ``ClientTLSSettings/keys``:
    ///
    /// ```yaml
    /// broker_tls:
    ///   ca_file: ca.pem            # trusted CAs; the system's when absent
    ///   cert_file: client.pem      # client certificate, for a node with `node.tls.ca_file`
    ///   key_file: client.key
    ///   server_name: zbus.example  # expected in the server's certificate; the host connected to by default
    ///   verify_hostname: true
    /// ```
    ///
    /// The files are read here, so a bad one is reported at its key.
    public func clientTLS(_ key: String) throws(ConfigError) -> ClientTLS? {
        guard let value = self[key] else { return nil }
        if case .scalar = value.kind {
            guard try bool(key) == true else { return nil }
            do throws(TLSFileError) {
                return try ClientTLS()
            } catch {
                throw value.error("\(error)")
            }
        }
        let section = try ConfigSection(value, allowedKeys: ClientTLSSettings.keys)
        let caFile = try section.string("ca_file"), certificateFile = try section.string("cert_file")
        let keyFile = try section.string("key_file"), serverName = try section.string("server_name")
        let verifyHostname = try section.bool("verify_hostname") ?? true
        do throws(TLSFileError) {
            return try ClientTLS(caFile: caFile, certificateFile: certificateFile, keyFile: keyFile, serverName: serverName,
                                 verifyHostname: verifyHostname)
        } catch {
            throw section.fileError(error, keys: [.certificate: "cert_file", .privateKey: "key_file", .certificateAuthority: "ca_file"])
        }
    }

    /// The `cert_file`, `key_file` and optional `ca_file` of a TLS port's section, read once to check them, so that
    /// `zbus check-config` and the start report a bad certificate or key at its key.
    public func serverTLSFiles() throws(ConfigError) -> ServerTLSFiles {
        guard let certificate = try string("cert_file") else {
            throw value.error("missing `cert_file:` (the server certificate, PEM)")
        }
        guard let key = try string("key_file") else {
            throw value.error("missing `key_file:` (the server certificate's private key, PEM)")
        }
        let files = ServerTLSFiles(certificateFile: certificate, keyFile: key, clientCAFile: try string("ca_file"))
        do throws(TLSFileError) {
            _ = try files.makeContext()
        } catch {
            throw fileError(error, keys: [.certificate: "cert_file", .privateKey: "key_file", .certificateAuthority: "ca_file"])
        }
        return files
    }

    /// A ``TLSFileError`` located at the key that named the file (or at the section when no key did).
    func fileError(_ error: TLSFileError, keys: [TLSFileError.Role: String]) -> ConfigError {
        if let key = keys[error.role], let value = self[key] { return value.error("\(error)") }
        return value.error("\(error)")
    }
}
