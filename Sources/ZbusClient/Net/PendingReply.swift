import NIOConcurrencyHelpers
import NIOCore

/// The reply a request is waiting for: completed once, on the client's event loop, and awaited by one task at a time.
///
/// A waiter that is cancelled either withdraws the request (ordinary requests) or only stops waiting, leaving the
/// reply to a later waiter (a consumer's long-poll, whose message must not be lost).
final class PendingReply: @unchecked Sendable {
    /// Thrown to a waiter whose own wait limit passed while the request is still outstanding.
    struct WaitExpired: Error {}

    let id: String
    let cmd: String?
    /// A one-way message is "replied" to as soon as it is written.
    let oneWay: Bool

    private let lock = NIOLock()
    private var result: Result<Message, any Error>?
    private var waiter: UnsafeContinuation<Message, any Error>?
    private var waitToken: UInt64 = 0

    init(id: String, cmd: String?, oneWay: Bool = false) {
        self.id = id
        self.cmd = cmd
        self.oneWay = oneWay
    }

    /// Whether the reply (or a failure) is in.
    var isCompleted: Bool { lock.withLock { result != nil } }

    /// Completes the reply; the first completion wins. Returns whether this one did.
    @discardableResult
    func complete(_ outcome: Result<Message, any Error>) -> Bool {
        lock.lock()
        guard result == nil else {
            lock.unlock()
            return false
        }
        result = outcome
        let waiter = self.waiter
        self.waiter = nil
        lock.unlock()
        waiter?.resume(with: outcome)
        return true
    }

    /// Waits for the reply.
    ///
    /// - Parameters:
    ///   - withdraw: on cancellation, called after the reply was completed with `CancellationError` (so the request
    ///     is abandoned); `nil` keeps the request outstanding and only stops this wait.
    ///   - until: a limit for this wait only, enforced on `eventLoop`; when it passes, ``WaitExpired`` is thrown and
    ///     the request stays outstanding.
    func wait(withdraw: (@Sendable () -> Void)?, until deadline: NIODeadline? = nil, on eventLoop: (any EventLoop)? = nil) async throws -> Message {
        if let ready = lock.withLock({ result }) { return try ready.get() }
        let token: UInt64 = lock.withLock {
            waitToken &+= 1
            return waitToken
        }
        return try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Message, any Error>) in
                lock.lock()
                if let result {
                    lock.unlock()
                    continuation.resume(with: result)
                    return
                }
                waiter = continuation
                lock.unlock()
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
        lock.lock()
        guard waitToken == token, let waiter else {
            lock.unlock()
            return
        }
        self.waiter = nil
        lock.unlock()
        waiter.resume(throwing: error)
    }
}
