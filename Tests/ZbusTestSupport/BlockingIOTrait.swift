import Foundation
import Testing

/// Runs a suite's tests (or one test) on ``BlockingExecutor`` rather than on Swift's cooperative pool, so that they may
/// block on sockets, child processes and semaphores while `swift test` runs other tests in parallel.
///
/// Tests under the trait take slots of ``BlockingIOSlots`` while they run: without a bound, every suite of child
/// processes would start at once, where the cooperative pool used to let two run at a time.
public struct BlockingIOTrait: SuiteTrait, TestTrait, TestScoping {
    /// How many slots a test takes.
    public enum Share: Sendable {
        /// One slot: it runs beside other blocking tests.
        case shared
        /// Every slot: no other blocking test runs meanwhile (for soak tests that measure latency under their own
        /// load).
        case exclusive
    }

    let share: Share

    public var isRecursive: Bool { true }

    public func scopeProvider(for test: Test, testCase: Test.Case?) -> Self? {
        // The suite itself needs no slot; its test cases take theirs (a suite holding one would wait for itself).
        testCase == nil ? nil : self
    }

    public func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        let slots = share == .exclusive ? BlockingIOSlots.shared.width : 1
        await BlockingIOSlots.shared.acquire(slots)
        defer { BlockingIOSlots.shared.release(slots) }
        try await withTaskExecutorPreference(BlockingExecutor.shared) {
            try await function()
        }
    }
}

extension Trait where Self == BlockingIOTrait {
    /// The test may block its thread (see ``BlockingIOTrait``).
    public static var blockingIO: Self { BlockingIOTrait(share: .shared) }

    /// The test may block its thread and runs while no other blocking test does.
    public static func blockingIO(_ share: BlockingIOTrait.Share) -> Self { BlockingIOTrait(share: share) }
}

/// A first-come-first-served counting semaphore for async callers: how many blocking tests run at once.
///
/// `ZBUS_TEST_BLOCKING_WIDTH` sets the width; by default it is the number of cores, at least 2.
public final class BlockingIOSlots: @unchecked Sendable {
    /// The slots of the test process.
    public static let shared = BlockingIOSlots(width: {
        if let text = ProcessInfo.processInfo.environment["ZBUS_TEST_BLOCKING_WIDTH"], let width = Int(text), width > 0 { return width }
        return max(2, ProcessInfo.processInfo.activeProcessorCount)
    }())

    /// The number of slots.
    public let width: Int
    private let lock = NSLock()
    private var free: Int
    private var waiters: [(count: Int, continuation: CheckedContinuation<Void, Never>)] = []

    init(width: Int) {
        self.width = width
        free = width
    }

    /// Waits (without blocking a thread) until `count` slots are free, then takes them.
    public func acquire(_ count: Int) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            lock.lock()
            if waiters.isEmpty && free >= count {
                free -= count
                lock.unlock()
                continuation.resume()
            } else {
                waiters.append((count, continuation))
                lock.unlock()
            }
        }
    }

    /// Gives back `count` slots and wakes the waiters, in order, that now fit.
    public func release(_ count: Int) {
        lock.lock()
        free += count
        var ready: [CheckedContinuation<Void, Never>] = []
        while let first = waiters.first, first.count <= free {
            free -= first.count
            ready.append(first.continuation)
            waiters.removeFirst()
        }
        lock.unlock()
        for continuation in ready { continuation.resume() }
    }
}
