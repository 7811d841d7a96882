/// Why a certificate, key or CA file could not be used. The message names the file and what was expected in it,
/// never the file's contents (a key must not reach a log).
public struct TLSFileError: Error, Sendable, CustomStringConvertible {
    /// What the file should hold.
    public enum Role: String, Sendable {
        case certificate = "certificate"
        case privateKey = "private key"
        case certificateAuthority = "CA certificate"
    }

    /// The file's path as configured.
    public let file: String
    /// What the file should hold.
    public let role: Role
    /// What is wrong with it.
    public let reason: String

    /// Describes a problem with `file`.
    public init(file: String, role: Role, reason: String) {
        self.file = file
        self.role = role
        self.reason = reason
    }

    public var description: String { "\(role.rawValue) file '\(file)': \(reason)" }
}
