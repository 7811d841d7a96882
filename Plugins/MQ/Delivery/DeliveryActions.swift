import NIOCore
import ZbusKernel

/// Whom an MQ's delivery state machines serve: a ``Session`` in the node, a stand-in in unit tests.
///
/// The state machines keep peers by object identity and ask them little, so they need no connection to run.
protocol DeliveryPeer: AnyObject {
    /// Whether the peer can still take a message (a closed connection cannot).
    var isActive: Bool { get }
    /// Whether the peer is the process's own worker on an event loop (an in-process session): such a peer may take
    /// a message ahead of its kind waiting on other loops when it lives on the loop delivering (see
    /// ``PointToPointDelivery/dispatch(into:next:)``).
    var isLoopWorker: Bool { get }
    /// Whether the calling thread is the peer's event loop.
    var isOnCurrentLoop: Bool { get }
}

extension DeliveryPeer {
    var isLoopWorker: Bool { false }
    var isOnCurrentLoop: Bool { false }
}

extension Session: DeliveryPeer {
    /// In-process sessions are the node's own modules (adapter and RPC workers) or the embedding program's.
    var isLoopWorker: Bool { isTrusted }
    var isOnCurrentLoop: Bool { eventLoop.inEventLoop }
}

/// How the answer to one consume is addressed: the consume's `id`, and whether its connection closes after it.
struct PullReply: Sendable, Equatable {
    var requestId: String?
    var closeAfterReply: Bool
}

/// Why a consume ends without a message.
enum PullEnding: Sendable, Equatable {
    /// 204: the wait limit passed, or a limit of 0 found nothing there.
    case nothingCame
    /// 429: `limit` consumes already wait on the MQ (`max_parked_consumes`).
    case tooManyParked(limit: Int)
    /// 404: the MQ was removed while the consume waited.
    case queueRemoved
}

/// One thing a delivery state machine asks its executor to send once the MQ's lock is released.
enum DeliveryAction<Peer: DeliveryPeer> {
    /// Hand `payload` to `peer` as the answer to its consume.
    case deliver(StoredMessage.Payload, to: Peer, reply: PullReply)
    /// End `peer`'s consume on MQ `mq` without a message.
    case end(PullEnding, mq: String, to: Peer, reply: PullReply)
}

/// Where a delivery state machine puts its actions, passed `inout` to each operation.
///
/// The executor passes its own collector, which turns each action into what it sends as it comes (see
/// `MessageQueue.Deliveries`: the first held inline, so a consume allocates no array); the state machines are
/// specialized for it, so an action is never built as an enum on the hot path. Tests pass ``DeliveryActions``.
protocol DeliveryCollector<Peer> {
    associatedtype Peer: DeliveryPeer
    /// Takes the next action, in order.
    mutating func append(_ action: consuming DeliveryAction<Peer>)
}

/// A collector that keeps the actions as they are, in order: what tests read.
struct DeliveryActions<Peer: DeliveryPeer>: DeliveryCollector {
    /// Every action, in order.
    private(set) var all: [DeliveryAction<Peer>] = []

    init() {}

    mutating func append(_ action: consuming DeliveryAction<Peer>) { all.append(action) }

    var isEmpty: Bool { all.isEmpty }

    var count: Int { all.count }
}

/// How long a consume may wait for a message (the `timeout` header).
enum WaitLimit: Sendable, Equatable {
    /// No limit: the consume waits until a message comes or its connection closes.
    case unlimited
    /// `timeout: 0`: answered at once, with a message if one is there, else 204.
    case immediate
    /// Waits until `deadline`. `now` is the time of the consume, passed in so that the state machines read no clock.
    case until(NIODeadline, now: NIODeadline)

    /// The least spacing of expiry timer firings, and so the precision of `timeout`: the timer is not re-armed for
    /// every consume (an MQ-RPC worker parks a consume for every call), and while answered pulls leave stale entries
    /// behind, it fires at most this often to clear them.
    static let expiryGranularity = TimeAmount.milliseconds(20)

    var deadline: NIODeadline? {
        if case .until(let deadline, _) = self { return deadline }
        return nil
    }
}

/// What the executor does with an MQ's one expiry timer.
enum ExpiryTimerAction: Sendable, Equatable {
    /// Cancel the armed timer, if any, and arm one for `at`; when it fires, pass `generation` back to `expire`.
    case arm(at: NIODeadline, generation: UInt64)
    /// Cancel the armed timer: nothing waits with a limit any more (the MQ was closed).
    case cancel
}

/// What a consume asks of its executor besides sending.
struct ConsumeOutcome: Sendable, Equatable {
    /// The peer consumed from this MQ for the first time (the executor notes it, so that its close visits this MQ).
    var isNewConsumer = false
    /// Acknowledgements moved the store's commit bound and no commit is scheduled yet: schedule one for the end of
    /// the tick (one cursor write per tick, not one per consume), which then takes the bound with `takeCommit()`.
    var commitDue = false
    /// What to do with the expiry timer.
    var timer: ExpiryTimerAction?
}
