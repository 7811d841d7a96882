import Foundation

/// Keeps child processes from being started while a test that reopens `flock`ed files runs.
///
/// Starting a child duplicates every descriptor of the test process until the child calls `exec` (close-on-exec
/// descriptors included). A store that a test closes and opens again in that moment finds its `.lock` still locked by
/// the child's copy, and refuses to open ("in use by another process"). Spawns (``ZbusProcess``, ``CommandProcess``)
/// pass through the gate, one at a time; tests under `.blockingIO(reopensLockedFiles: true)` hold it shut while they
/// run, and may run beside each other.
public final class SpawnGate: @unchecked Sendable {
    /// The gate of the test process.
    public static let shared = SpawnGate()

    private let condition = NSCondition()
    private var spawning = 0
    private var spawnsWaiting = 0
    private var lockingTests = 0

    /// Runs `spawn` once no test that reopens locked files runs; blocks until then.
    public func whileSpawning<T>(_ spawn: () throws -> T) rethrows -> T {
        preconditionMayBlock("starting a child process")
        condition.lock()
        spawnsWaiting += 1
        // One spawn at a time as well: spawns are brief, and one at a time they cannot interleave their descriptor
        // set-up (Foundation's `Process.run()`, used before ``SpawnedChild``, crashed when several ran at once).
        while lockingTests > 0 || spawning > 0 { condition.wait() }
        spawnsWaiting -= 1
        spawning += 1
        condition.unlock()
        defer {
            condition.lock()
            spawning -= 1
            condition.broadcast()
            condition.unlock()
        }
        return try spawn()
    }

    /// Blocks until no spawn is under way, and keeps new ones out until ``endLockingTest()``.
    func beginLockingTest() {
        preconditionMayBlock("waiting for child processes to start")
        condition.lock()
        // A waiting spawn goes first: spawns are brief, while locking tests may follow one another for a minute.
        while spawning > 0 || spawnsWaiting > 0 { condition.wait() }
        lockingTests += 1
        condition.unlock()
    }

    /// Lets spawns through again once no locking test runs.
    func endLockingTest() {
        condition.lock()
        lockingTests -= 1
        condition.broadcast()
        condition.unlock()
    }
}
