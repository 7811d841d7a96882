import Foundation

/// A task executor whose threads may block: every job runs on a worker thread of its own pool, and a worker that
/// blocks (a socket read, a child process's exit, a semaphore) holds only itself, because a job that finds no idle
/// worker gets a new one.
///
/// Swift's cooperative pool has as many threads as the machine has cores (two on CI). A test that blocks one of them
/// while `swift test` runs tests in parallel starves every async test meanwhile: their timeouts fire although nothing
/// is wrong. Tests that block run under ``Trait/blockingIO`` instead, which makes this executor their task's
/// preference, so the test body and everything it awaits run here.
public final class BlockingExecutor: TaskExecutor, @unchecked Sendable {
    /// The one pool of the test process.
    public static let shared = BlockingExecutor()

    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []
    private var head = 0
    /// Workers waiting for a job, and wake-ups handed out to them: a signalled worker consumes one wake-up, so a
    /// spurious wake-up never makes a job wait for a busy worker.
    private var idleWorkers = 0
    private var wakeUps = 0
    private var workerCount = 0

    private init() {}

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        if idleWorkers > 0 {
            idleWorkers -= 1
            wakeUps += 1
            condition.signal()
            condition.unlock()
        } else {
            workerCount += 1
            let name = "zbus-test-blocking-\(workerCount)"
            condition.unlock()
            let thread = Thread { [unowned self] in self.work() }
            thread.name = name
            thread.start()
        }
    }

    private func work() {
        Self.isWorker.value = true
        let executor = asUnownedTaskExecutor()
        condition.lock()
        while true {
            if head < jobs.count {
                let job = jobs[head]
                head += 1
                if head > 1024, head * 2 > jobs.count {
                    jobs.removeFirst(head)
                    head = 0
                }
                condition.unlock()
                job.runSynchronously(on: executor)
                condition.lock()
                continue
            }
            idleWorkers += 1
            while wakeUps == 0 { condition.wait() }
            wakeUps -= 1
        }
    }

    /// Whether the current thread is one of this pool's workers.
    public static var isCurrentThreadAWorker: Bool { isWorker.value }

    private static let isWorker = ThreadFlag()
}

/// A per-thread boolean (false until set on that thread).
final class ThreadFlag: @unchecked Sendable {
    private var key = pthread_key_t()

    init() { pthread_key_create(&key, nil) }

    var value: Bool {
        get { pthread_getspecific(key) != nil }
        set { pthread_setspecific(key, newValue ? UnsafeRawPointer(bitPattern: 1) : nil) }
    }
}

/// Stops the test process when blocking work runs on a thread of Swift's cooperative pool.
///
/// Blocking there is what made plain `swift test` (tests in parallel) fail: see ``BlockingExecutor``. A thread that
/// runs no task (one a test started itself) and the workers of ``BlockingExecutor`` may block.
public func preconditionMayBlock(_ what: @autoclosure () -> String, file: StaticString = #fileID, line: UInt = #line) {
    guard !BlockingExecutor.isCurrentThreadAWorker else { return }
    let inTask = withUnsafeCurrentTask { $0 != nil }
    precondition(!inTask, """
        \(what()) blocks its thread, and this one belongs to Swift's cooperative pool: give the test's suite the \
        `.blockingIO` trait (ZbusTestSupport), or run the work on a thread of its own
        """, file: file, line: line)
}
