import Logging
import NIOCore

/// What a ``ConnectionGuard`` needs from the connection handler it guards.
package protocol GuardedConnection: AnyObject {
    /// Whether part of a message's header block is held, its end not yet read.
    var isReadingHeaderBlock: Bool { get }
    /// A number that moves whenever bytes are read or written (reads counted plus bytes written): the idle check
    /// compares it with what it saw last time, which costs the read path an increment instead of a clock read.
    var activityCount: UInt64 { get }
    /// Messages cut from the input so far (a later count means a header block finished).
    var messageCount: UInt64 { get }
    /// Closes the connection at once (idle, or a slow consumer): its peer reads nothing anyway.
    func closeNow()
    /// Forgets what was read, sends `reply` and closes once it has left.
    func refuse(with reply: Message)
}

/// ``ConnectionLimits`` applied to one connection: its admission, its idle and header timeouts, and its share of the
/// node-wide byte budget. Owned by the connection's handler and used on its event loop only.
///
/// The handler keeps the counters the checks read (``GuardedConnection``) and calls in only past a threshold: a
/// partial message of ``ConnectionLimits/chargeThreshold`` or more, output queued in steps of ``outputCheckStep``, a
/// flush that leaves the channel unwritable. The timeouts are one task every quarter timeout, not a timer per read.
package final class ConnectionGuard {
    /// The node-wide bookkeeping this connection counts in.
    package let governor: ConnectionGovernor
    private let remoteIP: String
    private let remoteAddress: String
    private let logger: Logger
    private var admitted = false
    private var closed = false
    private var checkedActivity: UInt64 = 0
    private var idleSince: NIODeadline = .now()
    /// When the header block now arriving was first seen unfinished by the timeout check, and how many messages had
    /// been cut by then (a later count means that block finished and a new one began).
    private var partialHeaderSince: (deadline: NIODeadline, messages: UInt64)?
    private var timeoutCheck: Scheduled<Void>?
    /// Bytes charged to the node-wide budget for this connection's partial input and unread output.
    private var chargedInput = 0
    private var chargedOutput = 0

    /// Creates the guard of a connection from `remoteIP` (the per-address key; `remoteAddress`, with the port, is
    /// for logs).
    package init(governor: ConnectionGovernor, remoteIP: String, remoteAddress: String, logger: Logger) {
        self.governor = governor
        self.remoteIP = remoteIP
        self.remoteAddress = remoteAddress
        self.logger = logger
    }

    /// Admits the connection and starts its timeout checks, or returns the 503 to answer before closing it.
    package func admit(_ connection: any GuardedConnection, on loop: any EventLoop) -> Message? {
        if let refusal = governor.admit(address: remoteIP) {
            logger.notice("connection refused", metadata: ["remote": "\(remoteAddress)", "reason": "\(refusal)"])
            var reply = Message(status: 503, body: ByteBuffer(string: refusal))
            reply.closeRequested = true
            return reply
        }
        admitted = true
        let limits = governor.limits
        let shortest = [limits.idleTimeoutMilliseconds, limits.headerTimeoutMilliseconds].filter { $0 > 0 }.min()
        if let shortest {
            // A quarter of the shortest timeout: a connection is closed between 1x and 1.25x its timeout.
            let interval = TimeAmount.milliseconds(Int64(max(50, shortest / 4)))
            idleSince = .now()
            scheduleCheck(connection, on: loop, every: interval)
        }
        return nil
    }

    /// Whether part of this connection's input is charged to the node-wide budget (so a smaller partial message must
    /// be reported too, to release it).
    package var holdsInputCharge: Bool { chargedInput > 0 }

    /// Accounts for `held` bytes of a partial message; returns the 503 to answer (the input is then to be dropped
    /// and the connection closed) when the node-wide budget is spent.
    package func chargeInput(_ held: Int) -> Message? {
        guard !closed else { return nil }
        let counted = held >= ConnectionLimits.chargeThreshold ? held : 0
        let total = governor.charge(counted - chargedInput)
        chargedInput = counted
        guard governor.overBudget(total: total, held: counted) else { return nil }
        logger.warning("refusing a partial message", metadata: ["remote": "\(remoteAddress)", "held": "\(held)"])
        governor.charge(-chargedInput)
        chargedInput = 0
        var reply = Message(status: 503, body: ByteBuffer(string:
            "the node buffers \(total) bytes of unfinished messages and unread replies, over \(governor.limits.maxBufferedBytes) (node.limits.max_buffered_bytes); try again later"))
        reply.closeRequested = true
        return reply
    }

    /// Output queued between two looks at the budget: one pipelined read can ask for many large deliveries before
    /// anything is flushed, so a handler looks as output is queued, every this many bytes, not only at flushes.
    package static let outputCheckStep: UInt64 = 1 << 20

    /// Accounts for what waits for the peer to read, as `channel` reports it, plus `unflushed` bytes not yet handed
    /// to it. Returns whether to close the connection (a slow consumer, as NATS and Redis treat one, logged with the
    /// limit): it holds more than `max_output_bytes`, or a large share of a spent node-wide budget.
    package func chargeOutput(_ channel: any Channel, unflushed: Int = 0) -> Bool {
        // After the channel closed (a write that failed closes it inside the flush, and it still reads as not
        // writable), `close()` has released this connection's charges: charging again would leak them.
        guard !closed, channel.isActive,
            let buffered = try? channel.syncOptions?.getOption(ChannelOptions.bufferedWritableBytes)
        else { return false }
        let waiting = buffered + unflushed
        let limits = governor.limits
        let total = governor.charge(waiting - chargedOutput)
        chargedOutput = waiting
        let reason: String
        if waiting > limits.maxOutputBytes {
            reason = "\(waiting) bytes unread by the client, over \(limits.maxOutputBytes) (node.limits.max_output_bytes)"
        } else if governor.overBudget(total: total, held: waiting) {
            reason = "the node buffers \(total) bytes, over \(limits.maxBufferedBytes) (node.limits.max_buffered_bytes), \(waiting) of them for this client"
        } else {
            return false
        }
        logger.warning("closing a slow consumer", metadata: ["remote": "\(remoteAddress)", "reason": "\(reason)"])
        return true
    }

    /// The peer read down to the channel's low watermark: what it had waiting no longer counts.
    package func outputDrained() {
        guard chargedOutput > 0 else { return }
        governor.charge(-chargedOutput)
        chargedOutput = 0
    }

    /// The connection is gone: stops the checks and gives back its charges and its place.
    package func close() {
        guard !closed else { return }
        closed = true
        timeoutCheck?.cancel()
        timeoutCheck = nil
        if chargedInput + chargedOutput > 0 { governor.charge(-(chargedInput + chargedOutput)) }
        chargedInput = 0
        chargedOutput = 0
        if admitted { governor.release(address: remoteIP) }
        admitted = false
    }

    // MARK: - Timeouts

    private func scheduleCheck(_ connection: any GuardedConnection, on loop: any EventLoop, every interval: TimeAmount) {
        timeoutCheck = loop.assumeIsolatedUnsafeUnchecked().scheduleTask(in: interval) { [weak connection] in
            guard let connection, self.check(connection) else { return }
            self.scheduleCheck(connection, on: loop, every: interval)
        }
    }

    /// Closes the connection when it has been idle, or has been sending one header block, too long; returns whether
    /// to check again.
    private func check(_ connection: any GuardedConnection) -> Bool {
        guard !closed else { return false }
        let limits = governor.limits
        let now = NIODeadline.now()
        let activity = connection.activityCount
        if activity != checkedActivity {
            checkedActivity = activity
            idleSince = now
        }
        let idle = limits.idleTimeoutMilliseconds
        if idle > 0, now - idleSince >= .milliseconds(Int64(idle)) {
            logger.debug("closing an idle connection", metadata: ["remote": "\(remoteAddress)"])
            connection.closeNow()
            return false
        }
        let header = limits.headerTimeoutMilliseconds
        guard header > 0, connection.isReadingHeaderBlock else {
            partialHeaderSince = nil
            return true
        }
        let messages = connection.messageCount
        guard let since = partialHeaderSince, since.messages == messages else {
            partialHeaderSince = (now, messages)
            return true
        }
        guard now - since.deadline >= .milliseconds(Int64(header)) else { return true }
        var reply = Message(status: 408, body: ByteBuffer(string:
            "Request Timeout: the header block did not arrive within \(header) ms (node.limits.header_timeout)"))
        reply.closeRequested = true
        connection.refuse(with: reply)
        return false
    }
}
