/// A broker address as the zbus clients write it.
///
/// - `127.0.0.1:15555`: one node (``SingleBroker``).
/// - `h1:16666;h2:16667` (also `,` or spaces, or wrapped in `[...]`): a tracker list, for high availability
///   (``HaBroker``).
public enum BrokerAddress: Sendable, Equatable, CustomStringConvertible {
    /// One node.
    case single(HostAndPort)
    /// A list of trackers that tell which nodes host which MQ.
    case trackers([HostAndPort])

    /// Parses an address in either form.
    ///
    /// - Throws: ``ZbusClientError/invalidAddress(_:reason:)`` naming the part that is not `HOST:PORT`.
    public init(parsing text: String) throws(ZbusClientError) {
        var trimmed = Substring(text.trimmingWhitespace())
        var bracketed = false
        if trimmed.hasPrefix("["), trimmed.hasSuffix("]"), trimmed.count >= 2 {
            trimmed = trimmed.dropFirst().dropLast()
            bracketed = true
        }
        let parts = trimmed.split(whereSeparator: { $0 == ";" || $0 == "," || $0 == " " }).map(String.init)
        guard !parts.isEmpty else { throw .invalidAddress(text, reason: "it is empty") }
        var addresses: [HostAndPort] = []
        for part in parts {
            do throws(HostAndPort.ParseError) {
                addresses.append(try HostAndPort(parsing: part))
            } catch {
                throw .invalidAddress(text, reason: error.description)
            }
        }
        if addresses.count == 1 && !bracketed {
            self = .single(addresses[0])
        } else {
            self = .trackers(addresses)
        }
    }

    /// Parses an address that must name one node.
    static func parseSingle(_ text: String) throws(ZbusClientError) -> HostAndPort {
        guard case .single(let address) = try BrokerAddress(parsing: text) else {
            throw .invalidAddress(text, reason: "a tracker list names several nodes; a MessageClient talks to one HOST:PORT")
        }
        return address
    }

    /// The address as written (`host:port`, or the tracker list joined by `;`).
    public var description: String {
        switch self {
        case .single(let address): return address.description
        case .trackers(let list): return list.map(\.description).joined(separator: ";")
        }
    }
}

extension String {
    func trimmingWhitespace() -> String {
        var slice = Substring(self)
        while let first = slice.first, first.isWhitespace { slice = slice.dropFirst() }
        while let last = slice.last, last.isWhitespace { slice = slice.dropLast() }
        return String(slice)
    }
}
