/// The slave MQs of a master MQ: each gets a copy of every message produced to the master, its headers untouched,
/// with no dedupe key and no receipt (the producer hears from the master only).
///
/// Kept by name: attaching a slave of a name already attached replaces it in its place (the MQ of that name was
/// created again), and detaching forgets it (the MQ was removed). Slaves are copied to in the order they were
/// attached, so the copies of one produce always go out in the same order.
struct SlaveQueues<Queue: AnyObject> {
    private var entries: [(name: String, queue: Queue)] = []

    init() {}

    var isEmpty: Bool { entries.isEmpty }

    var count: Int { entries.count }

    /// The slaves to copy a produce to, in the order they were attached.
    var values: [Queue] { entries.map(\.queue) }

    /// The slave called `name`, if attached.
    subscript(name: String) -> Queue? { entries.first { $0.name == name }?.queue }

    /// Attaches `queue` as the slave called `name`, replacing one of that name.
    mutating func attach(_ queue: Queue, named name: String) {
        if let index = entries.firstIndex(where: { $0.name == name }) {
            entries[index].queue = queue
        } else {
            entries.append((name, queue))
        }
    }

    /// Detaches the slave called `name`, if attached.
    mutating func detach(named name: String) {
        entries.removeAll { $0.name == name }
    }
}
