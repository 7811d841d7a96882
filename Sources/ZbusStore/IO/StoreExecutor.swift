import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// The queue store's I/O thread: every system call that touches the store's files runs here, never on an event loop.
///
/// One thread, first in first out: work handed over by one caller runs in the order it was handed over, and work on
/// one queue (appends, reads, cursor writes, removal) never overtakes earlier work on it, so the store needs no
/// ordering of its own between the event loops that feed it. Callers hand over whole batches (one loop tick's
/// appends, a read-ahead of up to 256 KiB), not single records, so the hand-off costs once per batch.
///
/// Group-commit `fdatasync` under ``FsyncPolicy/always`` runs on the separate sync thread (``StoreSyncer``), so a
/// slow sync never holds up the writes and reads queued behind it.
///
/// Built on SwiftNIO's `NIOThreadPool` with one thread: its queue and wake-up are what a hand-written thread would
/// do, and it is kept by the SwiftNIO project.
public final class StoreExecutor: Sendable {
    private let pool: NIOThreadPool
    /// Set once the last work has run; later work is refused (see ``execute(_:ifStopped:)``).
    private let stopped = NIOLockedValueBox(false)

    init() {
        pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
    }

    /// Whether the calling thread is the I/O thread (where work already runs in order: nothing to hand over).
    public var isCurrent: Bool { StoreThread.isStoreThread }

    /// Runs `work` on the I/O thread, after everything handed over before it. When the store is closed (the thread
    /// stopped), `ifStopped` runs instead, on the calling thread or on a thread of the shutdown: it must do no I/O
    /// (fail a promise, answer with an error).
    public func execute(_ work: @escaping @Sendable () -> Void, ifStopped: @escaping @Sendable () -> Void = {}) {
        pool.submit { state in
            switch state {
            case .active:
                StoreThread.isStoreThread = true
                work()
            case .cancelled:
                ifStopped()
            }
        }
    }

    /// Runs `body` on the I/O thread and completes the returned future on `eventLoop` with its result. Fails with
    /// `stoppedError` when the store is closed.
    public func submit<Value: Sendable>(
        on eventLoop: any EventLoop, ifStopped stoppedError: QueueStoreError,
        _ body: @escaping @Sendable () throws(QueueStoreError) -> Value
    ) -> EventLoopFuture<Value> {
        let promise = eventLoop.makePromise(of: Value.self)
        execute({
            do throws(QueueStoreError) {
                promise.succeed(try body())
            } catch {
                promise.fail(error)
            }
        }, ifStopped: { promise.fail(stoppedError) })
        return promise.futureResult
    }

    /// Runs `body` on the I/O thread and waits for it: for threads that may wait (start-up, shutdown, tests),
    /// never an event loop. Runs it right away when called on the I/O thread itself.
    public func runAndWait<Value>(_ body: () throws(QueueStoreError) -> Value) throws(QueueStoreError) -> Value {
        if StoreThread.isStoreThread { return try body() }
        precondition(!StoreThread.isEventLoop, "the queue store was waited for on an event loop; hand the work over with execute or submit")
        let result = withoutActuallyEscaping(body) { body in
            let box = UnsafeResultBox(body: body)
            let done = ConditionLock(value: false)
            execute({
                box.run()
                done.lock()
                done.unlock(withValue: true)
            }, ifStopped: {
                box.result = .failure(.storeClosed(directory: "(closed)"))
                done.lock()
                done.unlock(withValue: true)
            })
            done.lock(whenValue: true)
            done.unlock()
            return box.result!
        }
        return try result.get()
    }

    /// Stops the thread once the work handed over so far has run. Work handed over afterwards gets its `ifStopped`.
    func shutdown() {
        let first = stopped.withLockedValue { stopped in
            defer { stopped = true }
            return !stopped
        }
        guard first else { return }
        if StoreThread.isStoreThread {
            // Closing from the I/O thread itself: it cannot wait for itself to end.
            pool.shutdownGracefully { _ in }
        } else {
            try? pool.syncShutdownGracefully()
        }
    }
}

/// Carries a non-escaping body and its result to the I/O thread while ``StoreExecutor/runAndWait(_:)`` waits: the
/// waiting caller keeps both alive, and the condition lock orders the accesses.
private final class UnsafeResultBox<Value>: @unchecked Sendable {
    let body: () throws(QueueStoreError) -> Value
    var result: Result<Value, QueueStoreError>?

    init(body: @escaping () throws(QueueStoreError) -> Value) {
        self.body = body
    }

    func run() {
        do throws(QueueStoreError) {
            result = .success(try body())
        } catch {
            result = .failure(error)
        }
    }
}
