import ZbusKernel

/// The tracker's table on the monitor page: one row per entry (server, MQ, mode, depth, consumers, last report), and
/// a row for each server that reports no entry, so that a joined but empty server still shows.
struct TrackerClusterPanel: MonitorPanel {
    let hub: TrackerHub

    var title: String { "Cluster (this node is a tracker)" }

    func table() async -> MonitorTable {
        let now = TrackerHub.now()
        let table = hub.table
        var rows: [[String]] = []
        for address in table.serverAddresses {
            guard let server = table.servers[address] else { continue }
            let connected = server.owner != nil ? "connected" : "reported"
            let slots = server.entries.values.sorted { $0.entry.id < $1.entry.id }
            if slots.isEmpty { rows.append([address, connected, "–", "–", "–", "–", "–"]) }
            for slot in slots {
                rows.append([
                    address, connected, slot.entry.id, Self.mode(slot.entry.mode), String(slot.entry.unconsumedCount),
                    String(slot.entry.consumerCount), "\(max(0, now - slot.refreshedAt) / 1000) s ago",
                ])
            }
        }
        return MonitorTable(columns: ["Server", "Link", "MQ", "Mode", "Depth", "Consumers", "Reported"], rows: rows,
                            emptyText: "no server has joined this tracker")
    }

    /// The zbus 6 mode bits in words.
    static func mode(_ bits: Int) -> String {
        var words: [String] = []
        if bits & 1 != 0 { words.append("MQ") }
        if bits & 2 != 0 { words.append("PubSub") }
        if bits & 4 != 0 { words.append("Memory") }
        if bits & 8 != 0 { words.append("RPC") }
        return words.isEmpty ? String(bits) : words.joined(separator: ", ")
    }
}
