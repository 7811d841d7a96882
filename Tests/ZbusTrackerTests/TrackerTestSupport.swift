import Foundation
import Testing
import ZbusKernel
import ZbusTestSupport

/// A node file written for one test: OS-chosen ports only (the trackers' ports are the ones the test's trackers got).
func writeNodeFile(_ yaml: String, in directory: URL, name: String) throws -> String {
    let path = directory.appendingPathComponent(name).path
    try yaml.write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

/// Starts a tracker node (listening on `listen`, an OS-chosen port by default).
func startTracker(directory: URL, listen: String = "127.0.0.1:0", extra: String = "") throws -> ZbusProcess {
    let file = try writeNodeFile("""
        node:
          name: tracker
        modules:
          - module: tracker
        \(extra.split(separator: "\n").map { "    \($0)" }.joined(separator: "\n"))
        """, in: directory, name: "tracker.yaml")
    return try ZbusProcess(arguments: ["--config", file], directory: directory, listen: listen)
}

/// Starts a broker (the `mq` module) that reports to `trackers` (none: it reports nowhere).
func startBroker(directory: URL, trackers: [Int]) throws -> ZbusProcess {
    let list = trackers.map { "127.0.0.1:\($0)" }.joined(separator: ", ")
    let file = try writeNodeFile("""
        node:
          name: broker
        \(trackers.isEmpty ? "" : "trackers: [\(list)]")
        modules:
          - module: mq
        """, in: directory, name: "broker.yaml")
    return try ZbusProcess(arguments: ["--config", file], directory: directory)
}

/// A tracker subscriber's view, built from what the tracker pushes, as an HA client builds it.
struct TrackerView: Equatable {
    var servers: Set<String> = []
    /// `id@server` → entry.
    var entries: [String: TrackerEntry] = [:]

    mutating func apply(_ message: Message) throws {
        switch message.cmd {
        case TrackerCommand.serverJoin?:
            servers.insert(try #require(message.server))
        case TrackerCommand.serverLeave?:
            let server = try #require(message.server)
            servers.remove(server)
            entries = entries.filter { $0.value.server != server }
        case TrackerCommand.entryUpdate?, TrackerCommand.pubAll?:
            for entry in try TrackerEntry.parseLines(message.bodyString) {
                servers.insert(entry.server)
                entries["\(entry.id)@\(entry.server)"] = entry
            }
        case TrackerCommand.entryRemove?:
            entries["\(message.bodyString)@\(try #require(message.server))"] = nil
        default:
            Issue.record("unexpected message from the tracker: \(message.cmd ?? "-") \(message.bodyString)")
        }
    }

    /// `id@server` of every entry, sorted.
    var keys: [String] { entries.keys.sorted() }
}

/// A connection subscribed to a tracker (`sub_all`), reading its pushes.
final class TrackerSubscriber {
    let client: WireClient
    var view = TrackerView()

    /// Subscribes and reads the answer: the `server_join`s, then `pub_all`, which is returned.
    init(port: Int, id: String = "sub") throws {
        client = try WireClient(port: port)
        client.request([("cmd", "sub_all"), ("id", id)])
        while true {
            let message = try client.receive(timeout: 10)
            try view.apply(message)
            if message.cmd == TrackerCommand.pubAll {
                #expect(message.id == id)
                return
            }
            #expect(message.cmd == TrackerCommand.serverJoin)
        }
    }

    /// The next push (applied to the view), or nil after `timeout` seconds.
    func next(timeout: Double) throws -> Message? {
        guard let message = try client.receiveIfAny(timeout: timeout) else { return nil }
        try view.apply(message)
        return message
    }

    /// Reads pushes until `condition` holds for the view, for at most `seconds`; returns whether it came to hold.
    func waitForView(within seconds: Double, _ condition: (TrackerView) -> Bool) throws -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while !condition(view) {
            let left = deadline.timeIntervalSinceNow
            guard left > 0, try next(timeout: left) != nil else { return condition(view) }
        }
        return true
    }

    /// Reads pushes until one with `cmd` arrives (others applied and skipped), for at most `seconds`.
    func waitFor(_ cmd: String, within seconds: Double) throws -> Message? {
        let deadline = Date().addingTimeInterval(seconds)
        while true {
            let left = deadline.timeIntervalSinceNow
            guard left > 0, let message = try next(timeout: left) else { return nil }
            if message.cmd == cmd { return message }
        }
    }

    func close() { client.close() }
}

/// Sends a command to a node and returns its reply.
@discardableResult
func call(_ port: Int, _ headers: [(String, String)], body: String? = nil) throws -> Message {
    let client = try WireClient(port: port)
    defer { client.close() }
    client.request(headers, body: body)
    return try client.receive(timeout: 10)
}
