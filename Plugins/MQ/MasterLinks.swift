/// The master links of the MQ table (slave name → master name), kept free of cycles and of chains longer than
/// `max_master_depth`.
///
/// Every message produced to a master is copied to its slaves by a nested call, so a cycle recursed until the stack
/// overflowed (issue 16: four anonymous requests crashed the node on every restart) and a long chain nests as deep.
/// Links are kept by name, dangling ones included: a slave whose master was removed still names it in its stored
/// definition and would follow a new MQ of that name after a restart, so a create that would close a cycle through
/// such a link is refused too.
struct MasterLinks: Sendable {
    /// Why a link is refused.
    enum Problem: Equatable, Sendable, CustomStringConvertible {
        /// The link would close this cycle (first and last names equal).
        case cycle([String])
        /// The longest chain through the link would have `links` links, more than `limit`.
        case tooDeep(links: Int, limit: Int)

        var description: String {
            switch self {
            case .cycle(let names):
                return "master_mq would close a cycle of master links: \(names.map(MQNameRules.shown).joined(separator: " -> "))"
            case .tooDeep(let links, let limit):
                return "master chain would have \(links) links, more than \(limit) (mq.max_master_depth)"
            }
        }
    }

    /// Slave → master, for every kept link.
    private(set) var masters: [String: String] = [:]

    init() {}

    /// Keeps the stored links that form no cycle and no chain over `maxDepth`, visiting slaves in name order (so the
    /// same store always keeps the same links); returns the links it broke and why.
    static func load(_ stored: [String: String], maxDepth: Int) -> (links: MasterLinks, broken: [(slave: String, master: String, problem: Problem)]) {
        var links = MasterLinks()
        var broken: [(slave: String, master: String, problem: Problem)] = []
        for slave in stored.keys.sorted() {
            let master = stored[slave]!
            if let problem = links.problem(linking: slave, to: master, maxDepth: maxDepth) {
                broken.append((slave, master, problem))
            } else {
                links.masters[slave] = master
            }
        }
        return (links, broken)
    }

    /// Why `slave` may not follow `master`, or `nil` when it may. `slave` must have no link yet.
    func problem(linking slave: String, to master: String, maxDepth: Int) -> Problem? {
        var chain = [slave]
        var seen: Set<String> = [slave]
        var current = master
        while true {
            chain.append(current)
            if current == slave { return .cycle(chain) }
            // Kept links have no cycle; the guard only bounds the walk should one ever appear.
            guard seen.insert(current).inserted, let next = masters[current] else { break }
            current = next
        }
        let links = (chain.count - 1) + height(under: slave)
        return links > maxDepth ? .tooDeep(links: links, limit: maxDepth) : nil
    }

    /// Records that `slave` follows `master` (checked with ``problem(linking:to:maxDepth:)`` first).
    mutating func link(_ slave: String, to master: String) { masters[slave] = master }

    /// Forgets the link of `slave` (its MQ was removed).
    mutating func unlink(_ slave: String) { masters[slave] = nil }

    /// Forgets the links of `master`'s slaves (it was removed). An MQ created later under its name is another MQ,
    /// perhaps with another owner and access token: a slave approved to copy the old one must not copy the new one.
    mutating func unlinkSlaves(of master: String) { masters = masters.filter { $0.value != master } }

    /// The slaves of `master` and all of theirs (not `master` itself).
    func descendants(of master: String) -> [String] {
        let children = childrenByMaster()
        var found: [String] = []
        var seen: Set<String> = [master]
        var stack = [master]
        while let name = stack.popLast() {
            for child in children[name] ?? [] where seen.insert(child).inserted {
                found.append(child)
                stack.append(child)
            }
        }
        return found
    }

    /// The number of links of the longest chain hanging below `name`.
    private func height(under name: String) -> Int {
        let children = childrenByMaster()
        var best = 0
        var seen: Set<String> = [name]
        var stack = [(name, 0)]
        while let (current, depth) = stack.popLast() {
            best = max(best, depth)
            for child in children[current] ?? [] where seen.insert(child).inserted { stack.append((child, depth + 1)) }
        }
        return best
    }

    private func childrenByMaster() -> [String: [String]] {
        var children: [String: [String]] = [:]
        for (slave, master) in masters { children[master, default: []].append(slave) }
        return children
    }
}
