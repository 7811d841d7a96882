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

    let id: String
    let cmd: String?
    /// A one-way message is "replied" to as soon as it is written.
    let oneWay: Bool

    private struct State {
        var result: Result<Message, any Error>?
        var waiter: UnsafeContinuation<Message, any Error>?
        var waitToken: UInt64 = 0
    }

    private let state = Mutex(State())

    init(id: String, cmd: String?, oneWay: Bool = false) {
        self.id = id
        self.cmd = cmd
        self.oneWay = oneWay
    }

    /// Whether the reply (or a failure) is in.
    var isCompleted: Bool { state.withLock { $0.result != nil } }

    /// Completes the reply; the first completion wins. Returns whether this one did.
    @discardableResult
    func complete(_ outcome: Result<Message, any Error>) -> Bool {
        let (completed, waiter) = state.withLock { state -> (Bool, UnsafeContinuation<Message, any Error>?) in
            guard state.result == nil else { return (false, nil) }
            state.result = outcome
            defer { state.waiter = nil }
            return (true, state.waiter)
        }
        waiter?.resume(with: outcome)
        return completed
    }

    /// Waits for the reply.
    ///
    /// - Parameters:
    ///   - withdraw: on cancellation, called after the reply was completed with `CancellationError` (so the request
    ///     is abandoned); `nil` keeps the request outstanding and only stops this wait.
    ///   - until: a limit for this wait only, enforced on `eventLoop`; when it passes, ``WaitExpired`` is thrown and
    ///     the request stays outstanding.
    nonisolated(nonsending) func wait(withdraw: (@Sendable () -> Void)?, until deadline: NIODeadline? = nil, on eventLoop: (any EventLoop)? = nil) async throws -> Message {
        let (ready, token) = state.withLock { state -> (Result<Message, any Error>?, UInt64) in
            if let result = state.result { return (result, 0) }
            state.waitToken &+= 1
            return (nil, state.waitToken)
        }
        if let ready { return try ready.get() }
        return try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Message, any Error>) in
                let ready: Result<Message, any Error>? = state.withLock { state in
                    if let result = state.result { return result }
                    state.waiter = continuation
                    return nil
                }
                if let ready {
                    continuation.resume(with: ready)
                    return
                }
                if Task.isCancelled {
                    cancelWait(token: token, withdraw: withdraw)
                } else if let deadline, let eventLoop {
                    eventLoop.scheduleTask(deadline: deadline) { self.expireWait(token: token) }
                }
            }
        } onCancel: {
            cancelWait(token: token, withdraw: withdraw)
        }
    }

    private func cancelWait(token: UInt64, withdraw: (@Sendable () -> Void)?) {
        if let withdraw {
            if complete(.failure(CancellationError())) { withdraw() }
            return
        }
        failWait(token: token, with: CancellationError())
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
