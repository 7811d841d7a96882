import NIOCore
import NIOSSL

/// A TLS server's certificate chain, private key and, optionally, the CA that client certificates must chain to: the
/// files of `node.tls` (or of a module's TLS port).
public struct ServerTLSFiles: Sendable, Equatable {
    /// PEM file with the server's certificate, then any intermediates.
    public var certificateFile: String
    /// PEM file with the server's private key (unencrypted).
    public var keyFile: String
    /// PEM file with the CA certificates that client certificates must chain to; when set, a client without a valid
    /// certificate is refused during the handshake.
    public var clientCAFile: String?

    /// Names the files; nothing is read yet.
    public init(certificateFile: String, keyFile: String, clientCAFile: String? = nil) {
        self.certificateFile = certificateFile
        self.keyFile = keyFile
        self.clientCAFile = clientCAFile
    }

    /// Reads the files and builds a server context.
    ///
    /// - Throws: ``TLSFileError`` naming the file that cannot be read or parsed, or a key that does not belong to the
    ///   certificate.
    public func makeContext() throws(TLSFileError) -> ServerTLSContext {
        let chain = try PEMFiles.certificates(certificateFile, role: .certificate)
        let key = try PEMFiles.privateKey(keyFile)
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        configuration.minimumTLSVersion = .tlsv12
        if let clientCAFile {
            let roots = try PEMFiles.certificates(clientCAFile, role: .certificateAuthority)
            configuration.trustRoots = .certificates(roots)
            // Clients have no names to check; their certificate must chain to the CA (and is then required).
            configuration.certificateVerification = .noHostnameVerification
            // Clients such as curl pick the certificate to offer from this list.
            configuration.sendCANameList = true
        }
        do {
            let context = try NIOSSLContext(configuration: configuration)
            return ServerTLSContext(context: context, leaf: chain[0])
        } catch {
            // BoringSSL refuses a key that does not match the certificate when the context is built.
            throw TLSFileError(file: keyFile, role: .privateKey,
                               reason: "cannot be used with the certificate of '\(certificateFile)' (does the key belong to it?): \(error)")
        }
    }
}

/// A ready server context and what may be logged about its certificate.
public struct ServerTLSContext: Sendable {
    /// The context new connections are wrapped with.
    public let context: NIOSSLContext
    /// The leaf certificate (for its subject and serial in logs).
    let leaf: NIOSSLCertificate

    /// The leaf certificate's serial number in hex, for logs (public data).
    public var serialNumber: String {
        leaf.serialNumber.map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }

    /// The leaf certificate's serial, common name and alternative names, for logs (public data): `serial=1001
    /// common_name=zbus-1 alternative_names=127.0.0.1`.
    public var summary: String {
        // NIOSSL's description holds the names; its serial drops each byte's leading zero, so ours replaces it.
        let fields = leaf.description.dropFirst().dropLast().split(separator: ";").dropFirst()
            .filter { !$0.hasPrefix("serial_number=") }
        return (["serial=\(serialNumber)"] + fields.map(String.init)).joined(separator: " ")
    }

    /// A handler that wraps one accepted connection.
    public func makeHandler() -> any ChannelHandler { NIOSSLServerHandler(context: context) }
}
