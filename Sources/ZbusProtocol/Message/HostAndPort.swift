/// A `host:port` pair as written in configuration and on the command line.
public struct HostAndPort: Sendable, Equatable, Hashable, CustomStringConvertible {
    /// Host name or IP address (IPv6 without brackets).
    public var host: String
    /// TCP port; 0 asks the OS for a free one.
    public var port: Int

    /// Why a string is not a `host:port`.
    public struct ParseError: Error, Sendable, CustomStringConvertible {
        /// The explanation.
        public let description: String
    }

    /// Creates an address.
    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port`, `[v6]:port` or `:port` (meaning `0.0.0.0`).
    public init(parsing text: String) throws(ParseError) {
        let trimmed = text.filter { $0 != " " }
        var host: Substring
        var portText: Substring
        if trimmed.hasPrefix("["), let close = trimmed.firstIndex(of: "]") {
            host = trimmed[trimmed.index(after: trimmed.startIndex)..<close]
            let rest = trimmed[trimmed.index(after: close)...]
            guard rest.hasPrefix(":") else { throw ParseError(description: "'\(text)' is not host:port (expected [ipv6]:port)") }
            portText = rest.dropFirst()
        } else {
            guard let colon = trimmed.lastIndex(of: ":") else {
                throw ParseError(description: "'\(text)' is not host:port (for example 127.0.0.1:15555)")
            }
            host = trimmed[..<colon]
            portText = trimmed[trimmed.index(after: colon)...]
        }
        if host.isEmpty { host = "0.0.0.0" }
        guard let port = Int(portText), (0...65535).contains(port) else {
            throw ParseError(description: "'\(text)' has no valid port (0...65535)")
        }
        self.host = String(host)
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
