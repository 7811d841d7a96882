import NIOCore
import Synchronization

/// The reply a request is waiting for: completed once, on the client's event loop, and awaited by one task at a time.
///
/// A waiter that is cancelled either withdraws the request (ordinary requests) or only stops waiting, leaving the
/// reply to a later waiter (a consumer's long-poll, whose message must not be lost).
///
/// Its state sits in a `Mutex` stored inline: one allocation per request, and a futex rather than a separately
/// allocated pthread mutex (a client creates one of these for every request it sends).
final class PendingReply: Sendable {
    /// Thrown to a waiter whose own wait limit passed while the request is still outstanding.
    struct WaitExpired: Error {}

    /// What a waiter's cancellation does to the request.
    enum OnCancel {
        /// Only this wait ends; the request stays outstanding for a later waiter (a consumer's long-poll, whose
        /// message must not be lost).
        case keepRequest
        /// The reply is completed with `CancellationError`; nothing else holds the request (a one-way write).
        case abandon
        /// The reply is completed with `CancellationError` and the request is withdrawn from `client`, so that a
        /// late reply is dropped. A case rather than a closure: no allocation per request.
        case withdraw(from: MessageClient)
    }

    let id: String
    let cmd: String?
    /// A one-way message is "replied" to as soon as it is written.
    let oneWay: Bool
    /// Called with the outcome instead of resuming a waiter, for code on the client's event loop that must not hop to
    /// a task for each reply (``MessageClient/send(_:timeout:onReply:)``). Every completion of such a reply happens on
    /// that loop.
    private let onComplete: (@Sendable (Result<Message, any Error>) -> Void)?

    private struct State {
        var completed = false
        /// The outcome while nobody waits for it; a waiter present at completion is resumed with it directly.
        var result: Result<Message, any Error>?
        var waiter: UnsafeContinuation<Message, any Error>?
        var waitToken: UInt64 = 0
    }

    private let state = Mutex(State())

    init(id: String, cmd: String?, oneWay: Bool = false, onComplete: (@Sendable (Result<Message, any Error>) -> Void)? = nil) {
        self.id = id
        self.cmd = cmd
        self.oneWay = oneWay
        self.onComplete = onComplete
    }

    /// Whether the reply (or a failure) is in.
    var isCompleted: Bool { state.withLock { $0.completed } }

    /// Completes the reply; the first completion wins. Returns whether this one did.
    ///
    /// The outcome is moved, never copied: to the waiter if one is there, into the state otherwise (each copy of a
    /// message is a retain and a release of each of its parts, on every reply).
    @discardableResult
    func complete(_ outcome: consuming Result<Message, any Error>) -> Bool {
        if let onComplete {
            let first = state.withLock { state -> Bool in
                guard !state.completed else { return false }
                state.completed = true
                return true
            }
            if first { onComplete(outcome) }
            return first
        }
        var outcome: Result<Message, any Error>? = consume outcome
        let (completed, waiter) = state.withLock { state -> (Bool, UnsafeContinuation<Message, any Error>?) in
            guard !state.completed else { return (false, nil) }
            state.completed = true
            if let waiter = state.waiter.take() { return (true, waiter) }
            state.result = outcome.take()
            return (true, nil)
        }
        if let waiter, let outcome = outcome.take() { waiter.resume(with: outcome) }
        return completed
    }

    /// Waits for the reply.
    ///
    /// - Parameters:
    ///   - onCancel: what cancellation of the waiting task does to the request.
    ///   - until: a limit for this wait only, enforced on `eventLoop`; when it passes, ``WaitExpired`` is thrown and
    ///     the request stays outstanding.
    nonisolated(nonsending) func wait(onCancel: OnCancel, until deadline: NIODeadline? = nil, on eventLoop: (any EventLoop)? = nil) async throws -> Message {
        let (ready, token) = state.withLock { state -> (Result<Message, any Error>?, UInt64) in
            if let result = state.result.take() { return (result, 0) }
            if state.completed {
                // Each outcome goes to exactly one wait; a second wait on a reply already handed out is a bug.
                assertionFailure("waiting again on the reply to \(id), which was already handed out")
                return (.failure(ZbusClientError.unsupported("the reply to \(id) was already handed out")), 0)
            }
            state.waitToken &+= 1
            return (nil, state.waitToken)
        }
        if let ready { return try ready.get() }
        return try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Message, any Error>) in
                let ready: Result<Message, any Error>? = state.withLock { state in
                    if let result = state.result.take() { return result }
                    state.waiter = continuation
                    return nil
                }
                if let ready {
                    continuation.resume(with: ready)
                    return
                }
                if Task.isCancelled {
                    cancelWait(token: token, onCancel: onCancel)
                } else if let deadline, let eventLoop {
                    eventLoop.scheduleTask(deadline: deadline) { self.expireWait(token: token) }
                }
            }
        } onCancel: {
            cancelWait(token: token, onCancel: onCancel)
        }
    }

    private func cancelWait(token: UInt64, onCancel: OnCancel) {
        switch onCancel {
        case .keepRequest:
            failWait(token: token, with: CancellationError())
        case .abandon:
            complete(.failure(CancellationError()))
        case .withdraw(let client):
            if complete(.failure(CancellationError())) { client.withdraw(self) }
        }
    }

    private func expireWait(token: UInt64) {
        failWait(token: token, with: WaitExpired())
    }

    /// Ends the wait `token` (if it is still the current one) with `error`.
    private func failWait(token: UInt64, with error: any Error) {
        let waiter: UnsafeContinuation<Message, any Error>? = state.withLock { state in
            guard state.waitToken == token, let waiter = state.waiter else { return nil }
            state.waiter = nil
            return waiter
        }
        waiter?.resume(throwing: error)
    }
}
