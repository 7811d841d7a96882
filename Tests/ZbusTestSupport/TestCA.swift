import Foundation

/// A certificate authority for TLS tests, made with the `openssl` command in a temporary directory: a CA, and
/// server and client certificates it signs (EC P-256, valid for two days).
public final class TestCA: @unchecked Sendable {
    /// A certificate and its private key, as PEM files.
    public struct Issued: Sendable {
        /// The certificate file.
        public let certificateFile: String
        /// The private key file.
        public let keyFile: String
    }

    /// The directory holding every file; removed by ``cleanUp()``.
    public let directory: URL
    /// The CA certificate file (what clients trust, and `node.tls.ca_file` for client certificates).
    public let caFile: String
    private let caKeyFile: String

    /// Makes a new CA named `name`.
    public init(name: String = "zbus test CA") throws {
        preconditionMayBlock("making a test CA")
        directory = ZbusProcess.makeTemporaryDirectory("zbus-ca")
        caFile = directory.appendingPathComponent("ca.pem").path
        caKeyFile = directory.appendingPathComponent("ca.key").path
        try Self.openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                          "-keyout", caKeyFile, "-out", caFile, "-days", "2", "-subj", "/CN=\(name)",
                          "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    }

    /// Issues a server certificate for `127.0.0.1` and `localhost` (subject alternative names), good for client use too
    /// (a node presents it on its own links).
    ///
    /// - Parameters:
    ///   - commonName: the subject's common name (shows which certificate a server presents).
    ///   - serial: the serial number.
    ///   - file: the base name of the `.pem` and `.key` files (replaced if they exist).
    public func issueServer(commonName: String = "zbus-test-server", serial: Int = 1, file: String = "server") throws -> Issued {
        try issue(commonName: commonName, serial: serial, file: file,
                  extensions: "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n")
    }

    /// Issues a client certificate (extended key usage `clientAuth`).
    public func issueClient(commonName: String = "zbus-test-client", serial: Int = 100, file: String = "client") throws -> Issued {
        try issue(commonName: commonName, serial: serial, file: file, extensions: "extendedKeyUsage=clientAuth\n")
    }

    private func issue(commonName: String, serial: Int, file: String, extensions: String) throws -> Issued {
        preconditionMayBlock("issuing a test certificate")
        let base = directory.appendingPathComponent(file).path
        let request = base + ".csr", extensionsFile = base + ".ext"
        // Written beside and renamed into place, so that a node reloading its files never sees a half-written one.
        let newCertificate = base + ".pem.new", newKey = base + ".key.new"
        try extensions.write(toFile: extensionsFile, atomically: true, encoding: .utf8)
        try Self.openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", newKey,
                          "-out", request, "-subj", "/CN=\(commonName)"])
        try Self.openssl(["x509", "-req", "-in", request, "-CA", caFile, "-CAkey", caKeyFile, "-set_serial", "\(serial)",
                          "-days", "2", "-out", newCertificate, "-extfile", extensionsFile])
        let issued = Issued(certificateFile: base + ".pem", keyFile: base + ".key")
        guard rename(newKey, issued.keyFile) == 0, rename(newCertificate, issued.certificateFile) == 0 else {
            throw TestCAError(message: "cannot rename the issued certificate into place: \(String(cString: strerror(errno)))")
        }
        return issued
    }

    /// Removes the directory.
    public func cleanUp() {
        try? FileManager.default.removeItem(at: directory)
    }

    /// Runs `openssl` with `arguments`; throws with its stderr when it fails.
    static func openssl(_ arguments: [String]) throws {
        let result = try runCommand("/usr/bin/env", ["openssl"] + arguments, timeout: 60)
        guard result.status == 0 else {
            throw TestCAError(message: "openssl \(arguments.prefix(2).joined(separator: " ")) failed (\(result.status)): \(result.stderr)")
        }
    }
}

/// An `openssl` command failed.
public struct TestCAError: Error, CustomStringConvertible {
    /// The command and its stderr.
    public let message: String
    public var description: String { message }
}
