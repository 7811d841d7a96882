import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A child process's exit as an event: the child's reaper thread (``SpawnedChild``) fires it, and a test waits for it
/// with a deadline (on a condition variable, or on a pipe beside other descriptors) instead of polling.
final class ChildExit: @unchecked Sendable {
    private let condition = NSCondition()
    private var exited = false
    private var exitStatus: Int32 = -1
    /// Readable once the child has exited.
    let readEnd: Int32
    private let writeEnd: Int32

    init() {
        var fds: [Int32] = [0, 0]
        precondition(pipe(&fds) == 0, "pipe: errno \(errno)")
        readEnd = fds[0]
        writeEnd = fds[1]
        // Not inherited by the child, nor by the other children tests start meanwhile.
        _ = fcntl(readEnd, F_SETFD, FD_CLOEXEC)
        _ = fcntl(writeEnd, F_SETFD, FD_CLOEXEC)
    }

    deinit {
        close(readEnd)
        close(writeEnd)
    }

    /// Records the exit (`status`: the exit code, the signal number for a child a signal ended, or -1 when it could
    /// not be reaped) and wakes waiters.
    func fire(status: Int32) {
        condition.lock()
        exited = true
        exitStatus = status
        condition.broadcast()
        condition.unlock()
        var byte: UInt8 = 1
        _ = write(writeEnd, &byte, 1)
    }

    /// Whether the child has exited and been reaped.
    var hasExited: Bool {
        condition.lock()
        defer { condition.unlock() }
        return exited
    }

    /// The exit code, or the number of the signal that ended the child; -1 while it runs (or if it could not be
    /// reaped), so that a child still running never passes for one that exited with 0.
    var status: Int32 {
        condition.lock()
        defer { condition.unlock() }
        return exitStatus
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

/// A child process started with `posix_spawn`, its stdout and stderr sent to files (or discarded), reaped by a thread
/// of its own that waits for it.
///
/// Not Foundation's `Process`: on Linux, its `run()` lists /proc/self/fd to close the test process's descriptors in
/// the child, and reads past the end of a directory entry buffer while doing so; with a thousand or more descriptors
/// open (a test suite's connections), that read could cross into an unmapped page and crash the whole test run with
/// SIGSEGV in a memcpy. Here the child closes every descriptor above stderr itself, as `posix_spawn` sets it up.
public final class SpawnedChild: @unchecked Sendable {
    /// The child's process id.
    public let processIdentifier: pid_t
    let exit: ChildExit

    /// Starts `executable` with `arguments`.
    ///
    /// - Parameters:
    ///   - environment: the child's environment; this process's by default.
    ///   - stdoutPath: a file the child's stdout goes to (appended), or `nil` for /dev/null; likewise `stderrPath`.
    /// - Throws: ``SpawnError`` when the child cannot be started (no such executable, no permission).
    public init(executable: String, arguments: [String], environment: [String: String]? = nil, stdoutPath: String? = nil,
                stderrPath: String? = nil) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdoutPath ?? "/dev/null", O_WRONLY | O_APPEND | O_CREAT, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderrPath ?? "/dev/null", O_WRONLY | O_APPEND | O_CREAT, 0o644)
        // Whatever else is open here and not close-on-exec stays out of the child (the node must not hold the tests'
        // sockets and locked store files).
        Self.closeDescriptors(from: 3, in: &actions)
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let variables = (environment ?? ProcessInfo.processInfo.environment).map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { variables.forEach { free($0) } }
        let exit = ChildExit()
        var pid: pid_t = 0
        let result = SpawnGate.shared.whileSpawning { posix_spawn(&pid, executable, &actions, nil, argv, variables) }
        guard result == 0 else { throw SpawnError(executable: executable, code: result) }
        let child = pid
        processIdentifier = child
        self.exit = exit
        // The reaper: waits for this child only (other children are left to whoever started them).
        Thread.detachNewThread {
            var status: Int32 = 0
            var reaped: pid_t
            repeat { reaped = waitpid(child, &status, 0) } while reaped < 0 && errno == EINTR
            // Exited: its code (bits 8-15); ended by a signal: the signal (bits 0-6), as `Process` reported it.
            exit.fire(status: reaped < 0 ? -1 : status & 0x7F == 0 ? (status >> 8) & 0xFF : status & 0x7F)
        }
    }

    /// Whether the child has exited and been reaped.
    public var hasExited: Bool { exit.hasExited }

    /// The exit code, or the number of the signal that ended the child; -1 while it runs.
    public var terminationStatus: Int32 { exit.status }

    /// Waits up to `seconds` for the exit; returns whether it came.
    @discardableResult
    public func wait(seconds: Double) -> Bool { exit.wait(seconds: seconds) }

    /// Adds to `actions` the closing of every descriptor from `first` up in the child: all at once where glibc can,
    /// else each descriptor open now (one closed meanwhile is no error to the child). For any test that spawns.
    public static func closeDescriptors(from first: Int32, in actions: inout posix_spawn_file_actions_t) {
        guard addCloseFrom?(&actions, first) != 0 else { return }
        let open = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        for descriptor in open.compactMap({ Int32($0) }) where descriptor >= first {
            posix_spawn_file_actions_addclose(&actions, descriptor)
        }
    }

    /// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34 and later), looked up at run time: Swift's Glibc
    /// module does not declare it.
    private static let addCloseFrom: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32)? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
    }()
}

/// A child process could not be started.
public struct SpawnError: Error, CustomStringConvertible {
    /// What was to run.
    public let executable: String
    /// `posix_spawn`'s error number.
    public let code: Int32

    public var description: String { "cannot start \(executable): \(String(cString: strerror(code)))" }
}
