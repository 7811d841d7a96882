import NIOCore
import NIOSSL

/// How a client connection is wrapped in TLS: which CAs it trusts, which certificate it presents, and which name it
/// expects in the server's certificate.
///
/// The files are read when the value is made, so a bad file fails at once with a ``TLSFileError`` rather than at every
/// connect; every connection then shares the one context.
///
/// ```swift
/// var configuration = ClientConfiguration()
/// configuration.tls = try ClientTLS(caFile: "ca.pem")                    // trust the test CA
/// configuration.tls = try ClientTLS(caFile: "ca.pem", certificateFile: "client.pem", keyFile: "client.key")
/// configuration.tls = try ClientTLS()                                      // trust the system's CAs
/// ```
public struct ClientTLS: Sendable {
    /// The CA file trusted, or `nil` for the system's trust store.
    public let caFile: String?
    /// The client certificate presented to a node that requires one (`node.tls.ca_file`).
    public let certificateFile: String?
    /// The client certificate's private key.
    public let keyFile: String?
    /// The name expected in the server's certificate (and sent as SNI); `nil` uses the host connected to (an IP
    /// address is then matched against the certificate's IP alternative names, and no SNI is sent).
    public let serverName: String?
    /// Whether the server's certificate must name the host (or ``serverName``); `false` still checks the chain.
    public let verifyHostname: Bool
    /// The shared context.
    let context: NIOSSLContext

    /// Reads the files and prepares the context.
    ///
    /// - Parameters:
    ///   - caFile: PEM CA certificates to trust; `nil` trusts the system's CAs.
    ///   - certificateFile: PEM client certificate (chain), presented when the server asks for one.
    ///   - keyFile: the client certificate's PEM private key; required with `certificateFile`.
    ///   - serverName: the name to expect in the server's certificate instead of the host connected to.
    ///   - verifyHostname: `false` accepts any certificate that chains to a trusted CA, whatever its names.
    /// - Throws: ``TLSFileError`` for a file that cannot be read or parsed, or a certificate without its key.
    public init(caFile: String? = nil, certificateFile: String? = nil, keyFile: String? = nil, serverName: String? = nil,
                verifyHostname: Bool = true) throws(TLSFileError) {
        self.caFile = caFile
        self.certificateFile = certificateFile
        self.keyFile = keyFile
        self.serverName = serverName
        self.verifyHostname = verifyHostname
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        configuration.certificateVerification = verifyHostname ? .fullVerification : .noHostnameVerification
        if let caFile {
            configuration.trustRoots = .certificates(try PEMFiles.certificates(caFile, role: .certificateAuthority))
        }
        switch (certificateFile, keyFile) {
        case (nil, nil):
            break
        case (let certificateFile?, let keyFile?):
            let chain = try PEMFiles.certificates(certificateFile, role: .certificate)
            configuration.certificateChain = chain.map { .certificate($0) }
            configuration.privateKey = .privateKey(try PEMFiles.privateKey(keyFile))
        case (let certificateFile?, nil):
            throw TLSFileError(file: certificateFile, role: .certificate, reason: "a client certificate needs its key file too")
        case (nil, let keyFile?):
            throw TLSFileError(file: keyFile, role: .privateKey, reason: "a client key needs its certificate file too")
        }
        do {
            context = try NIOSSLContext(configuration: configuration)
        } catch {
            throw TLSFileError(file: keyFile ?? caFile ?? "<system trust store>", role: keyFile == nil ? .certificateAuthority : .privateKey,
                               reason: "cannot build a TLS context: \(error)")
        }
    }

    /// Adds the TLS handler to a new client channel, first in its pipeline; call it from the channel initializer.
    ///
    /// - Parameter host: the host connected to: the name the server's certificate must carry unless ``serverName``
    ///   says otherwise.
    public func addHandler(to channel: any Channel, host: String) throws {
        let name = serverName ?? host
        // An IP address is not a valid SNI name: NIOSSL then checks the certificate against the peer's address.
        let sniName = Self.isIPAddress(name) ? nil : name
        let handler = try NIOSSLClientHandler(context: context, serverHostname: sniName)
        try channel.pipeline.syncOperations.addHandler(handler)
    }

    /// Whether `text` is an IPv4 or IPv6 literal.
    static func isIPAddress(_ text: String) -> Bool {
        if (try? SocketAddress(ipAddress: text, port: 0)) != nil { return true }
        // `[::1]` as written in URLs.
        if text.hasPrefix("["), text.hasSuffix("]") { return isIPAddress(String(text.dropFirst().dropLast())) }
        return false
    }
}
