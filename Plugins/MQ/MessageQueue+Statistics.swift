import DequeModule
import NIOCore
import ZbusKernel

/// What the statistics sampler keeps per MQ between two samples (under the MQ's lock).
///
/// The counters themselves are plain counts on the MQ's state, moved where the work happens (once per stored batch,
/// once per delivery); the sampler reads them once a second and turns them into rates here, so that neither the
/// produce nor the consume path pays for an atomic or a clock reading per message.
struct QueueSampling {
    private(set) var produceRate = 0.0
    private(set) var consumeRate = 0.0
    private var last: (at: NIODeadline, produced: UInt64, consumed: UInt64)?
    /// When the last stored sequence moved, once per sample at most, oldest first: the oldest waiting message was
    /// stored by the first checkpoint whose sequence reaches it. Bounded by ``maxCheckpoints``.
    private var checkpoints: Deque<(time: Int64, sequence: UInt64)> = []
    /// An hour of one-second samples.
    static let maxCheckpoints = 3600

    /// Sampling from `start` on, with every count at 0: what an MQ produces before its first sample counts in it.
    init(start: NIODeadline = .now()) {
        last = (start, 0, 0)
    }

    /// Takes a sample: rates since the last one, and a checkpoint if the last stored sequence moved. Checkpoints below
    /// `keepFrom` (acknowledged messages, which never come back) are dropped.
    mutating func sample(now: NIODeadline, wallClock: Int64, produced: UInt64, consumed: UInt64, lastSequence: UInt64,
                         keepFrom: UInt64) {
        if let last {
            let seconds = Double((now - last.at).nanoseconds) / 1e9
            if seconds > 0 {
                produceRate = Double(produced &- last.produced) / seconds
                consumeRate = Double(consumed &- last.consumed) / seconds
            }
        }
        last = (now, produced, consumed)
        if checkpoints.last.map({ $0.sequence != lastSequence }) ?? true {
            checkpoints.append((wallClock, lastSequence))
        }
        // Keep the last checkpoint below `keepFrom`'s: it dates the messages stored after it.
        while checkpoints.count > 1, checkpoints[1].sequence < keepFrom { checkpoints.removeFirst() }
        if checkpoints.count > Self.maxCheckpoints { checkpoints.removeFirst() }
    }

    /// How long the message of `sequence` has waited at `wallClock`, to the sampling second: from the first
    /// checkpoint that had stored it (a message stored before the first sample counts from that sample), or 0 if
    /// it was stored after the last sample.
    func age(of sequence: UInt64, wallClock: Int64) -> Int64 {
        guard let first = checkpoints.first else { return 0 }
        if sequence <= first.sequence { return max(0, wallClock - first.time) }
        for checkpoint in checkpoints where checkpoint.sequence >= sequence { return max(0, wallClock - checkpoint.time) }
        return 0
    }
}

extension MessageQueue {
    /// The counts of the MQ for the statistics (`mq` module's ``QueueStatisticsSource``): plain counts copied out
    /// under the lock.
    func sample(now: NIODeadline, wallClock: Int64) {
        lock.withLock {
            sampling.sample(now: now, wallClock: wallClock, produced: producedCount, consumed: deliveredCountLocked,
                            lastSequence: backend.lastSequence, keepFrom: pointToPoint.ledger.committed &+ 1)
        }
    }

    /// Messages handed to consumers so far.
    private var deliveredCountLocked: UInt64 { isPubSub ? pubSub.deliveredCount : pointToPoint.deliveredCount }

    /// The MQ's counts now.
    func statistics() -> QueueStatistics {
        lock.withLock { statisticsLocked() }
    }

    private func statisticsLocked() -> QueueStatistics {
        QueueStatistics(
            name: name, mode: definition.mode, modeDescription: Self.describe(mode),
            depth: isPubSub ? Int64(pubSub.bufferedCount) : waitingCountLocked,
            consumers: consumerCountLocked, inFlight: inFlightCountLocked,
            produced: producedCount, consumed: deliveredCountLocked, redelivered: pointToPoint.redeliveredCount,
            produceRate: sampling.produceRate, consumeRate: sampling.consumeRate,
            lastActivity: lastUpdate, isOpen: true)
    }

    /// The MQ in detail: its consumers by address, the age of its oldest waiting message and its topics.
    func detail(wallClock: Int64) -> QueueDetail {
        lock.withLock {
            let consumers: [QueueConsumerStatistics]
            var topics: Set<String> = []
            var oldest: Int64?
            if isPubSub {
                let subscribers = pubSub.subscribers
                consumers = subscribers.map {
                    QueueConsumerStatistics(remoteAddress: $0.peer.remoteAddress, topics: $0.topics.sorted(), inFlight: 0,
                                            isWaiting: pubSub.roster.consumers[ObjectIdentifier($0.peer)]?.pull != nil)
                }
                for subscriber in subscribers { topics.formUnion(subscriber.topics) }
            } else {
                consumers = pointToPoint.roster.consumers.values.map {
                    QueueConsumerStatistics(remoteAddress: $0.peer.remoteAddress, topics: [], inFlight: $0.held.count,
                                            isWaiting: $0.pull != nil)
                }
                if let sequence = pointToPoint.oldestWaitingSequence(storeHasPending: backend.pendingCount > 0) {
                    oldest = sampling.age(of: sequence, wallClock: wallClock)
                }
            }
            return QueueDetail(
                statistics: statisticsLocked(),
                consumers: consumers.sorted { $0.remoteAddress < $1.remoteAddress },
                oldestWaitingAge: oldest, topics: topics.sorted(), creator: definition.creator,
                masterMq: definition.masterMq)
        }
    }

    /// The mode bits in words: `MQ`, `PubSub, Memory`.
    static func describe(_ mode: MQMode) -> String {
        var words: [String] = []
        if mode.contains(.mq) { words.append("MQ") }
        if mode.contains(.pubSub) { words.append("PubSub") }
        if mode.contains(.memory) { words.append("Memory") }
        if mode.contains(.rpc) { words.append("RPC") }
        return words.isEmpty ? "MQ" : words.joined(separator: ", ")
    }
}
