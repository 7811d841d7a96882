import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The queue store's sync thread: group commit under ``FsyncPolicy/always``, periodic write-back under
/// ``FsyncPolicy/interval(milliseconds:)``, and under every policy the writing of read cursors that consumers moved
/// (at most every ``cursorInterval`` nanoseconds, so a burst of acknowledgements costs one write, off the loops).
///
/// Group commit loop: take every pending acknowledgement and the set of files they touch, `fdatasync` each file once
/// (no queue lock is held meanwhile), then run the callbacks. Appends that arrive while a sync runs pile up and are all
/// acknowledged by the next one, so the number of syncs per second stays bounded by the disk, not by the appends.
/// A dedicated thread (not an event loop) because `fdatasync` blocks for milliseconds.
final class StoreSyncer: @unchecked Sendable {
    typealias Callback = @Sendable (Result<Void, QueueStoreError>) -> Void

    private struct Acknowledgement {
        let file: StoreFile
        /// Earlier files a batch append also wrote to (empty for single appends, which never span files).
        let earlier: [StoreFile]
        let callback: Callback
    }

    private enum Mode {
        case groupCommit
        case interval(nanoseconds: Int64)
        /// ``FsyncPolicy/none``: nothing is synced; the thread only writes cursors.
        case cursorsOnly
    }

    /// How long a moved cursor may wait to be written when nothing else wakes the thread: after a crash, records
    /// acknowledged in the last this-many nanoseconds are delivered again (at-least-once).
    static let cursorInterval: Int64 = 50_000_000

    private let mode: Mode
    private let logger: Logger
    /// Told how long each file's sync took (the node's fsync latency metric).
    private let onSync: (@Sendable (Duration) -> Void)?
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>

    // Guarded by `mutex`.
    private var dirty: [ObjectIdentifier: StoreFile] = [:]
    /// Queues whose read cursor moved since it was last written.
    private var movedCursors: [ObjectIdentifier: DurableQueue] = [:]
    private var acknowledgements: [Acknowledgement] = []
    private var stopping = false
    private var stopped = false
    private var thread: pthread_t?

    /// Starts the thread.
    static func start(policy: FsyncPolicy, logger: Logger, onSync: (@Sendable (Duration) -> Void)? = nil) -> StoreSyncer {
        let syncer: StoreSyncer
        switch policy {
        case .none: syncer = StoreSyncer(mode: .cursorsOnly, logger: logger, onSync: onSync)
        case .always: syncer = StoreSyncer(mode: .groupCommit, logger: logger, onSync: onSync)
        case .interval(let milliseconds):
            syncer = StoreSyncer(mode: .interval(nanoseconds: Int64(max(1, milliseconds)) * 1_000_000), logger: logger, onSync: onSync)
        }
        syncer.launch()
        return syncer
    }

    private init(mode: Mode, logger: Logger, onSync: (@Sendable (Duration) -> Void)?) {
        self.mode = mode
        self.logger = logger
        self.onSync = onSync
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        condition = .allocate(capacity: 1)
        condition.initialize(to: pthread_cond_t())
        #if os(Linux)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
        #else
        pthread_cond_init(condition, nil)
        #endif
    }

    deinit {
        pthread_cond_destroy(condition)
        condition.deallocate()
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    private func launch() {
        let context = Unmanaged.passRetained(self).toOpaque()
        #if os(Linux)
        var handle = pthread_t()
        let result = pthread_create(&handle, nil, { raw in
            let syncer = Unmanaged<StoreSyncer>.fromOpaque(raw!).takeRetainedValue()
            syncer.run()
            return nil
        }, context)
        #else
        var handle: pthread_t?
        let result = pthread_create(&handle, nil, { raw in
            let syncer = Unmanaged<StoreSyncer>.fromOpaque(raw).takeRetainedValue()
            syncer.run()
            return nil
        }, context)
        #endif
        precondition(result == 0, "cannot start the queue store's sync thread: \(QueueStoreError.describe(errno: result))")
        pthread_mutex_lock(mutex)
        thread = handle
        pthread_mutex_unlock(mutex)
    }

    /// Notes that `file` holds written data the next periodic sync must cover.
    func markDirty(_ file: StoreFile) {
        pthread_mutex_lock(mutex)
        dirty[ObjectIdentifier(file)] = file
        pthread_mutex_unlock(mutex)
    }

    /// Notes that `queue`'s read cursor moved: the thread writes it (``DurableQueue/persistCursor()``) within
    /// ``cursorInterval``, or with the next group commit or periodic sync if that comes first.
    func cursorMoved(_ queue: DurableQueue) {
        pthread_mutex_lock(mutex)
        movedCursors[ObjectIdentifier(queue)] = queue
        pthread_mutex_unlock(mutex)
    }

    /// Queues `file` for the next group commit and calls `callback` once it is synced. `earlier` names files a batch
    /// wrote to before `file`; they must have been queued already (they are synced in this group commit or an
    /// earlier one), and a failed sync of any of them fails the callback too. After ``stop()`` the sync runs right
    /// away on the caller's thread.
    func enqueue(_ file: StoreFile, earlier: [StoreFile] = [], callback: Callback?) {
        pthread_mutex_lock(mutex)
        if stopped {
            pthread_mutex_unlock(mutex)
            var result: Result<Void, QueueStoreError> = .success(())
            do throws(QueueStoreError) {
                for other in earlier { try other.sync() }
                try file.sync()
            } catch {
                result = .failure(error)
            }
            callback?(result)
            return
        }
        dirty[ObjectIdentifier(file)] = file
        if let callback { acknowledgements.append(Acknowledgement(file: file, earlier: earlier, callback: callback)) }
        pthread_cond_signal(condition)
        pthread_mutex_unlock(mutex)
    }

    /// Syncs what is pending, runs the outstanding callbacks and ends the thread. Idempotent.
    func stop() {
        pthread_mutex_lock(mutex)
        stopping = true
        let handle = thread
        thread = nil
        pthread_cond_signal(condition)
        pthread_mutex_unlock(mutex)
        guard let handle else { return }
        // A callback that closes the store runs on this very thread: it cannot wait for itself.
        if pthread_equal(handle, pthread_self()) != 0 {
            pthread_detach(handle)
        } else {
            pthread_join(handle, nil)
        }
    }

    private func run() {
        var deadline = Self.monotonicNanoseconds()
        while true {
            pthread_mutex_lock(mutex)
            switch mode {
            case .groupCommit:
                // Cursors alone do not wake the thread (that would cost a wake-up per acknowledgement): they wait
                // for the next group commit or for `cursorInterval`.
                let cursorDeadline = Self.monotonicNanoseconds() + Self.cursorInterval
                while acknowledgements.isEmpty && dirty.isEmpty && !stopping {
                    if movedCursors.isEmpty {
                        pthread_cond_wait(condition, mutex)
                    } else if Self.monotonicNanoseconds() >= cursorDeadline {
                        break
                    } else {
                        wait(until: cursorDeadline)
                    }
                }
            case .interval(let nanoseconds):
                deadline += nanoseconds
                let now = Self.monotonicNanoseconds()
                if deadline < now { deadline = now }
                while !stopping && Self.monotonicNanoseconds() < deadline {
                    wait(until: deadline)
                }
            case .cursorsOnly:
                deadline = Self.monotonicNanoseconds() + Self.cursorInterval
                while !stopping && Self.monotonicNanoseconds() < deadline {
                    wait(until: deadline)
                }
            }
            let cursors = movedCursors
            movedCursors = [:]
            pthread_mutex_unlock(mutex)
            // Written before the files are taken, so that the sync below covers them.
            for queue in cursors.values { queue.persistCursor() }
            pthread_mutex_lock(mutex)
            var files = dirty
            let waiting = acknowledgements
            dirty = [:]
            acknowledgements = []
            if stopping && files.isEmpty && waiting.isEmpty && movedCursors.isEmpty {
                stopped = true
                pthread_mutex_unlock(mutex)
                return
            }
            pthread_mutex_unlock(mutex)
            if case .cursorsOnly = mode { files = [:] }
            syncAndAcknowledge(files: files, waiting: waiting)
        }
    }

    private func syncAndAcknowledge(files: [ObjectIdentifier: StoreFile], waiting: [Acknowledgement]) {
        for file in files.values {
            do throws(QueueStoreError) {
                let start = ContinuousClock.now
                try file.sync()
                onSync?(ContinuousClock.now - start)
            } catch {
                logger.error("queue store sync failed", metadata: ["file": "\(file.path)", "error": "\(error)"])
            }
        }
        // Failures stick to their file, so an acknowledgement also sees one from an earlier group commit.
        for acknowledgement in waiting {
            if let failure = acknowledgement.file.syncError ?? acknowledgement.earlier.lazy.compactMap(\.syncError).first {
                acknowledgement.callback(.failure(failure))
            } else {
                acknowledgement.callback(.success(()))
            }
        }
    }

    /// Waits on the condition until `deadline` (monotonic nanoseconds); the caller holds `mutex`.
    private func wait(until deadline: Int64) {
        #if os(Linux)
        var time = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        pthread_cond_timedwait(condition, mutex, &time)
        #else
        let remaining = max(0, deadline - Self.monotonicNanoseconds())
        var time = timespec(tv_sec: Int(remaining / 1_000_000_000), tv_nsec: Int(remaining % 1_000_000_000))
        pthread_cond_timedwait_relative_np(condition, mutex, &time)
        #endif
    }

    private static func monotonicNanoseconds() -> Int64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Int64(time.tv_sec) * 1_000_000_000 + Int64(time.tv_nsec)
    }
}
