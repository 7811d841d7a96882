#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOConcurrencyHelpers
import NIOCore
import ZbusKernel

/// What the monitor knows between two requests: the node it watches, the rate history of each MQ, and what is too
/// slow to read on an event loop (the store's size on disk, the panels' tables), refreshed by the sampler once a
/// second.
final class MonitorState: Sendable {
    /// The node, as `start` found it.
    struct Node: Sendable {
        let name: String
        let address: String
        let sessions: SessionRegistry
        let modules: [String]
        let queues: (any QueueStatisticsSource)?
        let panels: [String: any MonitorPanel]
    }

    /// A panel's table as last sampled.
    struct PanelSnapshot: Sendable {
        let name: String
        let title: String
        let table: MonitorTable
    }

    private struct Sampled {
        var node: Node?
        var history: [String: RateHistory] = [:]
        var storeBytes: Int64 = 0
        var panels: [PanelSnapshot] = []
        var stopping = false
        var samples = 0
    }

    /// The store's size is read every this many samples: listing a large store's files each second would cost more
    /// than the figure is worth.
    static let storeSizeEvery = 5

    let historySeconds: Int
    /// When the module was built (the node's start, to the second).
    let startedAt = NIODeadline.now()
    let startedAtWallClock = WallClock.milliseconds()
    private let sampled = NIOLockedValueBox(Sampled())

    init(historySeconds: Int) {
        self.historySeconds = historySeconds
    }

    func attach(_ node: Node) {
        sampled.withLockedValue { $0.node = node }
    }

    var node: Node? { sampled.withLockedValue { $0.node } }

    /// Whether a graceful stop began (`/health` answers 503).
    var isStopping: Bool { sampled.withLockedValue { $0.stopping } }

    func markStopping() { sampled.withLockedValue { $0.stopping = true } }

    var storeBytes: Int64 { sampled.withLockedValue { $0.storeBytes } }

    var panels: [PanelSnapshot] { sampled.withLockedValue { $0.panels } }

    /// Seconds since the node started.
    var uptimeSeconds: Double { Double((NIODeadline.now() - startedAt).nanoseconds) / 1e9 }

    /// The rate history of `mq`, oldest first, at most `limit` samples.
    func history(of mq: String, limit: Int) -> (produce: [Double], consume: [Double]) {
        sampled.withLockedValue { state in
            guard let history = state.history[mq] else { return ([], []) }
            return (history.produce(last: limit), history.consume(last: limit))
        }
    }

    /// Takes one sample: every MQ's rates into its history, the store's size, the panels' tables. Runs off the event
    /// loops (the store's size is read from the file system).
    func sample() async {
        guard let node else { return }
        let statistics = node.queues?.queueStatistics() ?? []
        let readStore = sampled.withLockedValue { state in
            defer { state.samples += 1 }
            return state.samples % Self.storeSizeEvery == 0
        }
        let storeBytes = readStore ? node.queues?.storeBytes() : nil
        var panels: [PanelSnapshot] = []
        for (name, panel) in node.panels.sorted(by: { $0.key < $1.key }) {
            panels.append(PanelSnapshot(name: name, title: panel.title, table: await panel.table()))
        }
        let capacity = historySeconds
        sampled.withLockedValue { state in
            var history: [String: RateHistory] = [:]
            history.reserveCapacity(statistics.count)
            for queue in statistics {
                // Taken out of the old table, so that its buffers are not shared and the append writes in place
                // (a copy of every MQ's history each second would hold the lock the event loops read under).
                var rates = state.history.removeValue(forKey: queue.name) ?? RateHistory(capacity: capacity)
                rates.append(produce: queue.produceRate, consume: queue.consumeRate)
                history[queue.name] = rates
            }
            // Removed MQs leave the history with the table.
            state.history = history
            if let storeBytes { state.storeBytes = storeBytes }
            state.panels = panels
        }
    }
}

/// The last `capacity` rate samples of one MQ, one a second, in two rings (a sample costs no shift of the others).
struct RateHistory: Sendable {
    let capacity: Int
    private var produceRing: [Double] = []
    private var consumeRing: [Double] = []
    /// Where the oldest sample is once the rings are full (and the next one goes).
    private var start = 0

    init(capacity: Int) {
        self.capacity = max(1, capacity)
    }

    /// The last `limit` produce rates, oldest first.
    func produce(last limit: Int) -> [Double] { Self.last(limit, of: produceRing, start: start) }
    /// The last `limit` consume rates, oldest first.
    func consume(last limit: Int) -> [Double] { Self.last(limit, of: consumeRing, start: start) }

    mutating func append(produce rate: Double, consume consumeRate: Double) {
        if produceRing.count < capacity {
            produceRing.append(rate)
            consumeRing.append(consumeRate)
        } else {
            produceRing[start] = rate
            consumeRing[start] = consumeRate
            start = (start + 1) % capacity
        }
    }

    private static func last(_ limit: Int, of ring: [Double], start: Int) -> [Double] {
        let count = min(max(0, limit), ring.count)
        // The newest sample sits just before `start` (at the end while the ring fills).
        return (0..<count).map { ring[(start + ring.count - count + $0) % ring.count] }
    }
}

/// Wall-clock milliseconds since 1970.
enum WallClock {
    static func milliseconds() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Int64(spec.tv_sec) * 1000 + Int64(spec.tv_nsec) / 1_000_000
    }
}
