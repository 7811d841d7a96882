import Foundation
import Testing

/// Runs a suite's tests (or one test) on ``BlockingExecutor`` rather than on Swift's cooperative pool, so that they may
/// block on sockets, child processes and semaphores, or compute for seconds, while `swift test` runs other tests in
/// parallel.
///
/// The cooperative pool has one thread per core. Every test that holds one of them for long (a blocking read, a fuzz
/// loop, an fsync loop) takes it from the async tests and from the library's own tasks, whose timeouts then fire
/// although nothing is wrong.
///
/// Heavy tests (``Weight/heavy``: child nodes under load, fuzzing, fsync loops) also take one of the slots of
/// ``BlockingIOSlots`` while they run, so that no more of them than cores run at once.
public struct BlockingIOTrait: SuiteTrait, TestTrait, TestScoping {
    /// How much of the machine a test takes.
    public enum Weight: Sendable {
        /// Mostly waiting: it runs beside anything.
        case light
        /// Keeps a core busy: it takes one slot.
        case heavy
        /// Measures latency under its own load: it takes every slot, so no other heavy test runs meanwhile.
        case exclusive
    }

    let weight: Weight
    /// Whether the test closes and reopens `flock`ed files (a queue store): no child process starts meanwhile (see
    /// ``SpawnGate``).
    let reopensLockedFiles: Bool

    public var isRecursive: Bool { true }

    public func scopeProvider(for test: Test, testCase: Test.Case?) -> Self? {
        // The suite itself needs no slot; its test cases take theirs (a suite holding one would wait for itself).
        testCase == nil ? nil : self
    }

    public func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        let slots = switch weight {
        case .light: 0
        case .heavy: 1
        case .exclusive: BlockingIOSlots.shared.width
        }
        await BlockingIOSlots.shared.acquire(slots)
        defer { BlockingIOSlots.shared.release(slots) }
        try await withTaskExecutorPreference(BlockingExecutor.shared) {
            guard reopensLockedFiles else { return try await function() }
            SpawnGate.shared.beginLockingTest()
            defer { SpawnGate.shared.endLockingTest() }
            try await function()
        }
    }
}

extension Trait where Self == BlockingIOTrait {
    /// The test may block its thread (see ``BlockingIOTrait``); it is light.
    public static var blockingIO: Self { BlockingIOTrait(weight: .light, reopensLockedFiles: false) }

    /// The test may block its thread, and takes `weight` of the machine; with `reopensLockedFiles`, no child process
    /// starts while it runs.
    public static func blockingIO(_ weight: BlockingIOTrait.Weight, reopensLockedFiles: Bool = false) -> Self {
        BlockingIOTrait(weight: weight, reopensLockedFiles: reopensLockedFiles)
    }
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
        guard count > 0 else { return }
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
        guard count > 0 else { return }
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
