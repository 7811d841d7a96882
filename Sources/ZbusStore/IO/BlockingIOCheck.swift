import NIOConcurrencyHelpers
import NIOPosix

/// The store's rule about threads, checked in debug builds: a system call that can wait for the storage device never
/// runs on an event loop.
///
/// On an event loop the store only copies bytes into and out of the kernel's page cache: the `write(2)` of appended
/// records (as Redis writes its append-only file from its event loop), and reads with `RWF_NOWAIT`, which fail rather
/// than wait when the data is not cached (the store then reads ahead on its I/O thread). Everything else (opening,
/// creating, truncating, renaming and deleting files, listing directories, `fdatasync`, and reads that may wait) runs
/// on the store's threads: its I/O thread, its sync thread, or the caller's own thread at start-up and shutdown.
/// Every such call goes through ``check(_:)``.
public enum BlockingIOCheck {
    /// Receives each violation in debug builds; `nil` (the default) stops the process with an assertion failure.
    private static let handler = NIOLockedValueBox<(@Sendable (String) -> Void)?>(nil)

    /// Replaces what happens when, in a debug build, a call that can wait for the device runs on an event loop: by
    /// default an assertion failure stops the process. Tests install a handler to count violations instead; `nil`
    /// restores the default. Release builds never check.
    public static func setViolationHandler(_ newHandler: (@Sendable (String) -> Void)?) {
        handler.withLockedValue { $0 = newHandler }
    }

    /// Whether this build checks the rule (debug builds only).
    public static var isEnabled: Bool {
        #if DEBUG
        true
        #else
        false
        #endif
    }

    /// Whether the calling thread runs an event loop (a thread-local read: asked only on the store's slow paths).
    static var isOnEventLoop: Bool { MultiThreadedEventLoopGroup.currentEventLoop != nil }

    /// In debug builds, reports `operation` if the calling thread is an event loop's.
    @inline(__always)
    static func check(_ operation: @autoclosure () -> String) {
        #if DEBUG
        if MultiThreadedEventLoopGroup.currentEventLoop != nil { report(operation()) }
        #endif
    }

    private static func report(_ operation: String) {
        let text = "the queue store's '\(operation)' may wait for the disk and must not run on an event loop"
        if let handler = handler.withLockedValue({ $0 }) {
            handler(text)
        } else {
            assertionFailure(text)
        }
    }
}
