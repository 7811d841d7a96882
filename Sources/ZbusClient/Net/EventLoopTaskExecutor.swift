import NIOCore
import NIOPosix

/// Runs Swift tasks on a client's event loop.
///
/// A task that awaits replies in a tight loop normally hops twice per request: from its thread to the connection's
/// event loop to write, and back to the cooperative pool when the reply comes. Preferring the connection's event loop
/// removes both hops:
///
/// ```swift
/// try await withTaskExecutorPreference(consumer.taskExecutor) {
///     while let message = try await consumer.take(timeout: .seconds(1)) { handle(message) }
/// }
/// ```
///
/// Code running there must not block: it shares the thread with the connections' I/O.
public final class EventLoopTaskExecutor: TaskExecutor, @unchecked Sendable {
    /// The event loop the tasks run on.
    public let eventLoop: any EventLoop

    /// An executor for `eventLoop`.
    public init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    /// Runs `job` on the event loop.
    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedTaskExecutor()
        eventLoop.execute { job.runSynchronously(on: executor) }
    }
}
