import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Waits for changes to files through inotify, so that tests wait for a ready file or a log line as an event rather
/// than by reading the file again and again.
final class FileWatch {
    private let fd: Int32

    /// Watches `path` (a file or a directory) for the events of `mask` (`IN_MODIFY`, `IN_MOVED_TO`, ...).
    init(_ path: String, mask: UInt32) throws {
        fd = inotify_init1(Int32(IN_CLOEXEC | IN_NONBLOCK))
        guard fd >= 0 else { throw WireClientError.connectFailed("inotify_init1: errno \(errno)") }
        guard inotify_add_watch(fd, path, mask) >= 0 else {
            let code = errno
            Glibc.close(fd)
            throw WireClientError.connectFailed("inotify_add_watch \(path): errno \(code)")
        }
    }

    deinit { Glibc.close(fd) }

    /// What ended a wait.
    enum Wake {
        /// The watched file or directory changed (or may have: read it again).
        case changed
        /// `other` became readable.
        case other
        /// The deadline passed.
        case deadline
    }

    /// Blocks until the watched path changes, `other` (a descriptor such as a process's exit pipe) becomes readable,
    /// or `deadline` (monotonic seconds) passes.
    func wait(until deadline: Double, orReadable other: Int32? = nil) -> Wake {
        preconditionMayBlock("waiting for a file to change")
        while true {
            let left = deadline - monotonicSeconds()
            guard left > 0 else { return .deadline }
            var fds = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0)]
            if let other { fds.append(pollfd(fd: other, events: Int16(POLLIN), revents: 0)) }
            let ready = poll(&fds, nfds_t(fds.count), Int32(min(left * 1000 + 1, Double(Int32.max))))
            if ready < 0 && errno == EINTR { continue }
            if ready <= 0 { return .deadline }
            if fds.count > 1 && fds[1].revents != 0 { return .other }
            var buffer = [UInt8](repeating: 0, count: 4096)
            while buffer.withUnsafeMutableBytes({ read(fd, $0.baseAddress, $0.count) }) > 0 {}
            return .changed
        }
    }
}

/// Seconds of the monotonic clock.
public func monotonicSeconds() -> Double {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
}
