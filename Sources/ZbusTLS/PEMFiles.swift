import NIOSSL

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads PEM certificates and keys with errors that name the file and the problem (NIOSSL's own errors say only
/// "failed to load").
enum PEMFiles {
    /// Every certificate of a PEM file, leaf first.
    static func certificates(_ path: String, role: TLSFileError.Role) throws(TLSFileError) -> [NIOSSLCertificate] {
        let bytes = try readFile(path, role: role)
        guard containsPEMBlock(bytes, label: "CERTIFICATE") else {
            throw TLSFileError(file: path, role: role, reason: "no PEM block of a certificate in the file")
        }
        do {
            let certificates = try NIOSSLCertificate.fromPEMBytes(bytes)
            guard !certificates.isEmpty else {
                throw TLSFileError(file: path, role: role, reason: "the file holds no certificate")
            }
            return certificates
        } catch let error as TLSFileError {
            throw error
        } catch {
            throw TLSFileError(file: path, role: role, reason: "not a valid PEM certificate (\(error))")
        }
    }

    /// The private key of a PEM file (unencrypted: PKCS#8, PKCS#1 RSA or SEC1 EC).
    static func privateKey(_ path: String) throws(TLSFileError) -> NIOSSLPrivateKey {
        let bytes = try readFile(path, role: .privateKey)
        if containsPEMBlock(bytes, label: "ENCRYPTED PRIVATE KEY") {
            throw TLSFileError(file: path, role: .privateKey,
                               reason: "the key is encrypted; store it unencrypted and protect the file (mode 0600)")
        }
        guard containsPEMBlock(bytes, label: "PRIVATE KEY") else {
            throw TLSFileError(file: path, role: .privateKey, reason: "no PEM block of a private key in the file")
        }
        do {
            return try NIOSSLPrivateKey(bytes: bytes, format: .pem)
        } catch {
            // The error is NIOSSL's generic one: it never carries the key's bytes.
            throw TLSFileError(file: path, role: .privateKey, reason: "not a valid PEM private key")
        }
    }

    /// Whether `bytes` hold a `-----BEGIN <label>-----` line whose label ends with `label`.
    private static func containsPEMBlock(_ bytes: [UInt8], label: String) -> Bool {
        let text = String(decoding: bytes, as: UTF8.self)
        for line in text.split(whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            guard line.hasPrefix("-----BEGIN "), line.hasSuffix("-----") else { continue }
            if line.dropFirst("-----BEGIN ".count).dropLast("-----".count).hasSuffix(label) { return true }
        }
        return false
    }

    /// The whole file, with POSIX calls (the kernel keeps Foundation out of its dependencies).
    private static func readFile(_ path: String, role: TLSFileError.Role) throws(TLSFileError) -> [UInt8] {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw TLSFileError(file: path, role: role, reason: "cannot open it: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw TLSFileError(file: path, role: role, reason: "cannot read it: \(String(cString: strerror(errno)))")
            }
            if count == 0 { break }
            bytes.append(contentsOf: chunk[0..<count])
            guard bytes.count <= 1 << 20 else { throw TLSFileError(file: path, role: role, reason: "larger than 1 MiB; not a PEM file") }
        }
        return bytes
    }
}
