import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A child process's exit as an event: Foundation's termination handler fires it, and a test waits for it with a
/// deadline (on a condition variable, or on a pipe beside other descriptors) instead of asking `isRunning` in a loop.
final class ChildExit: @unchecked Sendable {
    private let condition = NSCondition()
    private var exited = false
    /// Readable once the child has exited.
    let readEnd: Int32
    private let writeEnd: Int32

    /// Watches `process`; call before `process.run()`.
    init(_ process: Process) {
        var fds: [Int32] = [0, 0]
        precondition(pipe(&fds) == 0, "pipe: errno \(errno)")
        readEnd = fds[0]
        writeEnd = fds[1]
        // Not inherited by the child, nor by the other children tests start meanwhile.
        _ = fcntl(readEnd, F_SETFD, FD_CLOEXEC)
        _ = fcntl(writeEnd, F_SETFD, FD_CLOEXEC)
        process.terminationHandler = { [self] _ in
            condition.lock()
            exited = true
            condition.broadcast()
            condition.unlock()
            var byte: UInt8 = 1
            _ = write(writeEnd, &byte, 1)
        }
    }

    deinit {
        close(readEnd)
        close(writeEnd)
    }

    /// Whether the child has exited and been reaped.
    var hasExited: Bool {
        condition.lock()
        defer { condition.unlock() }
        return exited
    }

    /// Blocks until the child exits or `seconds` pass; returns whether it exited.
    @discardableResult
    func wait(seconds: Double) -> Bool {
        preconditionMayBlock("waiting for a child process to exit")
        let deadline = Date().addingTimeInterval(seconds)
        condition.lock()
        defer { condition.unlock() }
        while !exited {
            if !condition.wait(until: deadline) { return exited }
        }
        return true
    }
}
