import NIOPosix

/// Which thread the caller is on, for the store's rule that nothing on an event loop waits for the disk.
public enum StoreThread {
    /// Whether the calling thread runs a SwiftNIO event loop (`MultiThreadedEventLoopGroup`), where the store's
    /// blocking entry points must not be called: a serving thread would wait for the disk.
    public static var isEventLoop: Bool { MultiThreadedEventLoopGroup.currentEventLoop != nil }

    private static let marks = ThreadSpecificVariable<Marker>()

    /// Whether the calling thread is a store's I/O thread (see ``StoreExecutor``).
    static var isStoreThread: Bool {
        get { marks.currentValue != nil }
        set { marks.currentValue = newValue ? Marker.shared : nil }
    }

    private final class Marker: Sendable {
        static let shared = Marker()
    }

    /// In debug builds, stops the process when a blocking store entry point is called on an event loop (release
    /// builds check nothing). `entryPoint` names the caller in the message.
    @inline(__always)
    static func assertOffEventLoop(_ entryPoint: StaticString = #function) {
        assert(!isEventLoop, "queue store I/O (\(entryPoint)) called on an event loop: hand it to the store's I/O thread (QueueStore.executor)")
    }
}
