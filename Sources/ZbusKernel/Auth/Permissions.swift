/// What a caller may do on one MQ.
///
/// `admin` includes `produce` and `consume` (an operator who may remove an MQ may also read and write it), as a
/// RabbitMQ user with configure, write and read on a queue would.
public struct Permissions: OptionSet, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// `produce` (and a URL-RPC call, which is a produce).
    public static let produce = Permissions(rawValue: 1)
    /// `consume`, and `route` replies to the producers of MQs one consumes from.
    public static let consume = Permissions(rawValue: 2)
    /// `create_mq`, `remove_mq`, `add_key`, `remove_key`, and routing to anyone.
    public static let admin = Permissions(rawValue: 4)

    /// Every permission.
    public static let all: Permissions = [.produce, .consume, .admin]

    /// The permission names, for refusals and logs (`produce,consume`).
    public var description: String {
        var names: [String] = []
        if contains(.produce) { names.append("produce") }
        if contains(.consume) { names.append("consume") }
        if contains(.admin) { names.append("admin") }
        return names.isEmpty ? "none" : names.joined(separator: ",")
    }

    /// The single permission's name (for "needs the X permission").
    public var name: String { description }
}

/// An MQ name pattern of an `auth` grant: literal characters, and `*` for any run of characters (`orders.*`, `*`).
public struct NamePattern: Sendable, Hashable, CustomStringConvertible {
    /// The pattern as written.
    public let text: String
    private let parts: [Substring]

    /// Parses `text`.
    public init(_ text: String) {
        self.text = text
        self.parts = text.split(separator: "*", omittingEmptySubsequences: false)
    }

    /// Whether the pattern matches every name.
    public var matchesEverything: Bool { parts.allSatisfy(\.isEmpty) }

    /// Whether `name` matches.
    public func matches(_ name: String) -> Bool {
        guard parts.count > 1 else { return name == text }
        var rest = Substring(name)
        guard rest.hasPrefix(parts[0]) else { return false }
        rest = rest.dropFirst(parts[0].count)
        let last = parts[parts.count - 1]
        for part in parts[1..<(parts.count - 1)] where !part.isEmpty {
            guard let range = rest.range(of: part) else { return false }
            rest = rest[range.upperBound...]
        }
        return rest.count >= last.count && rest.hasSuffix(last)
    }

    public var description: String { text }
}

extension Substring {
    /// The first range of `other` in this string (Foundation-free).
    fileprivate func range(of other: Substring) -> Range<Index>? {
        var start = startIndex
        while start < endIndex {
            if self[start...].hasPrefix(other) { return start..<index(start, offsetBy: other.count) }
            start = index(after: start)
        }
        return nil
    }
}

/// The permissions one token (or the anonymous caller) holds: a list of patterns per permission.
public struct Grants: Sendable {
    /// Patterns and the permissions each grants, in file order.
    public var rules: [(pattern: NamePattern, permissions: Permissions)] = []
    /// Whether the holder may use the tracker commands (`server_join`, `entry_update`, `sub_all`, `tracker_info` ...).
    public var tracker = false

    /// No permission at all.
    public init() {}

    /// Every permission on every MQ, and the tracker commands.
    public static let everything: Grants = {
        var grants = Grants()
        grants.rules = [(NamePattern("*"), .all)]
        grants.tracker = true
        return grants
    }()

    /// The union of every rule whose pattern matches `mq` (admin implies produce and consume).
    public func permissions(on mq: String) -> Permissions {
        var result: Permissions = []
        for rule in rules where rule.pattern.matches(mq) { result.formUnion(rule.permissions) }
        if result.contains(.admin) { result.formUnion(.all) }
        return result
    }

    /// Whether any permission is granted on any MQ (such a caller may open the monitor, which shows only its MQs).
    public var isEmpty: Bool { rules.isEmpty && !tracker }

    /// Whether admin is granted on every MQ name (a `*` admin rule): the node-wide operator.
    public var isAdminEverywhere: Bool {
        rules.contains { $0.permissions.contains(.admin) && $0.pattern.matchesEverything }
    }
}
