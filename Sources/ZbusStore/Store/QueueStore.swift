import Logging
import NIOConcurrencyHelpers
import NIOPosix

/// The kernel's durable queue store: a directory of named FIFO queues (one ``DurableQueue`` per sub-directory).
///
/// ```swift
/// let store = try QueueStore(directory: "./data", fsync: .interval(milliseconds: 100), logger: logger)
/// let queue = try store.open(name: "Orders", metadata: nil)
/// let sequence = try queue.append(bytes) { result in ... }   // durable under the policy
/// while let (sequence, record) = queue.next() { ...; queue.commit(through: sequence) }
/// store.close()
/// ```
///
/// Layout: `<directory>/<encoded queue name>/` holds the segment files (`00000000000000000001.seg`, ...), the
/// read cursor (`cursor`) and the metadata blob (`meta`). Queue names may hold any character; they are mapped to
/// directory names by percent-encoding every byte outside `[A-Za-z0-9._-]` and a leading `.`
/// (see ``directoryName(forQueue:)``). The store keeps `<directory>/.lock` locked (`flock`) while it is open, so a second
/// process cannot open the same directory.
public final class QueueStore: Sendable {
    /// The store's directory.
    public let directory: String
    /// The sync policy of every queue in the store.
    public let fsync: FsyncPolicy
    /// The size at which a queue starts a new segment file.
    public let segmentBytes: Int

    private let logger: Logger
    private let syncer: StoreSyncer?
    /// The store's I/O thread: what may wait for the disk and is asked for from an event loop (creating and removing
    /// queues, preparing segment files, reading uncached records ahead) runs here, one job at a time, in order.
    private let io: NIOThreadPool
    private let state: NIOLockedValueBox<State>

    private struct State {
        var closed = false
        /// Holds the directory's lock until the store is closed.
        var lockFile: StoreFile?
        /// Every queue on disk, by name; `nil` until it is opened.
        var queues: [String: DurableQueue?]
    }

    /// The prefix of a directory being deleted (a crash during ``remove(name:)`` leaves it behind; the next start
    /// finishes the job). Encoded queue names never start with a dot.
    private static let removalPrefix = ".removing-"
    /// Locked while a store has the directory open, so that two processes never write the same queues.
    private static let lockFileName = ".lock"

    /// Opens the store in `directory`, creating the directory if it is missing, and finds the queues it holds. No
    /// queue is read until it is opened.
    /// - Parameters:
    ///   - directory: where the queues live.
    ///   - fsync: when appended records are synced (see ``FsyncPolicy``).
    ///   - segmentBytes: the size at which a queue starts a new segment file (a larger record gets one of its own).
    ///   - logger: receives recovery reports (cut tails, damaged files) with the queue name as `mq` metadata.
    ///   - onSync: told how long each sync of the fsync policy took (on the store's sync thread: keep it short).
    /// - Throws: ``QueueStoreError`` when the directory cannot be created or listed.
    public init(directory: String, fsync: FsyncPolicy, segmentBytes: Int = 64 << 20, logger: Logger,
                onSync: (@Sendable (Duration) -> Void)? = nil)
        throws(QueueStoreError)
    {
        self.directory = directory
        self.fsync = fsync
        self.segmentBytes = max(segmentBytes, SegmentFormat.headerSize + SegmentFormat.recordHeaderSize + 1)
        self.logger = logger
        try StoreFileSystem.makeDirectories(directory)
        let lockFile = try StoreFile.openReadWrite(directory + "/" + QueueStore.lockFileName, create: true)
        guard try lockFile.tryLock() else { throw .directoryInUse(directory: directory) }
        var queues: [String: DurableQueue?] = [:]
        for entry in try StoreFileSystem.list(directory) {
            let path = directory + "/" + entry
            if entry.hasPrefix(QueueStore.removalPrefix) {
                logger.info("finishing an interrupted queue removal", metadata: ["file": "\(path)"])
                try StoreFileSystem.removeTree(path)
                continue
            }
            guard StoreFileSystem.isDirectory(path) else { continue }
            guard let name = QueueName.decode(entry) else {
                logger.warning("ignoring a directory that is not a queue of this store", metadata: ["file": "\(path)"])
                continue
            }
            queues[name] = .some(nil)
        }
        state = NIOLockedValueBox(State(lockFile: lockFile, queues: queues))
        syncer = StoreSyncer.start(policy: fsync, logger: logger, onSync: onSync)
        io = NIOThreadPool(numberOfThreads: 1)
        io.start()
    }

    deinit {
        close()
    }

    /// The directory name (inside the store's directory) of the queue `name`.
    public static func directoryName(forQueue name: String) -> String {
        QueueName.encode(name)
    }

    /// The names of the queues in the store: those found on disk when it was opened, plus those opened since, minus
    /// those removed. Sorted.
    public func queueNames() -> [String] {
        state.withLockedValue { $0.queues.keys.sorted() }
    }

    /// Opens the queue `name`, creating it when it does not exist. Opening an open queue returns the same instance.
    /// - Parameters:
    ///   - name: any non-empty string whose encoded form fits in a directory name (255 bytes).
    ///   - metadata: written when the queue is created; when the queue exists, replaces its metadata if non-nil.
    /// - Throws: ``QueueStoreError`` for an invalid name, a closed store, or files that cannot be created or read.
    public func open(name: String, metadata: [UInt8]?) throws(QueueStoreError) -> DurableQueue {
        let encoded = try QueueName.validate(name)
        return try state.withLockedValue { state in Result { () throws(QueueStoreError) -> DurableQueue in
            guard !state.closed else { throw .storeClosed(directory: directory) }
            if case .some(.some(let queue)) = state.queues[name] {
                if let metadata, metadata != queue.metadata { try queue.setMetadata(metadata) }
                return queue
            }
            let path = directory + "/" + encoded
            let created = !StoreFileSystem.exists(path)
            do throws(QueueStoreError) {
                if created {
                    try StoreFileSystem.makeDirectories(path)
                    if fsync != .none { try StoreFileSystem.syncDirectory(directory) }
                }
                let queue = try DurableQueue(
                    name: name, directory: path, metadata: metadata, policy: fsync, segmentBytes: segmentBytes,
                    syncer: syncer, io: io, logger: logger)
                state.queues[name] = .some(queue)
                return queue
            } catch {
                // A queue this call began must not outlive the failure: a leftover directory would be found as a
                // queue by the next start (and every failed create under a descriptor shortage would leave one).
                if created { discardCreated(path) }
                throw error
            }
        } }.get()
    }

    /// Removes the directory of a queue whose creation failed, logging (not throwing) what cannot be removed.
    private func discardCreated(_ path: String) {
        do {
            try StoreFileSystem.removeTree(path)
            if fsync != .none { try StoreFileSystem.syncDirectory(directory) }
        } catch {
            logger.error("could not remove the directory of a queue whose creation failed", metadata: ["file": "\(path)", "error": "\(error)"])
        }
    }

    /// Reads the metadata blob of the queue `name` without opening the queue (no descriptor stays open), so that a
    /// store can be listed and its queues opened on demand.
    /// - Returns: the metadata, or `nil` when the queue has none stored.
    /// - Throws: ``QueueStoreError`` for an invalid or unknown name, or a damaged or unreadable file.
    public func storedMetadata(name: String) throws(QueueStoreError) -> [UInt8]? {
        let encoded = try QueueName.validate(name)
        return try state.withLockedValue { state in Result { () throws(QueueStoreError) -> [UInt8]? in
            guard !state.closed else { throw .storeClosed(directory: directory) }
            guard let entry = state.queues[name] else { throw .queueNotFound(name: name) }
            if let queue = entry { return queue.metadata }
            return try CheckedBlobFile.metadata.load(directory: directory + "/" + encoded)
        } }.get()
    }

    /// Closes the queue `name` and deletes its directory and files. Holders of the ``DurableQueue`` see it closed.
    /// - Throws: ``QueueStoreError/queueNotFound(name:)`` when there is no such queue, or an I/O error.
    public func remove(name: String) throws(QueueStoreError) {
        let encoded = try QueueName.validate(name)
        try state.withLockedValue { state in Result { () throws(QueueStoreError) in
            guard !state.closed else { throw .storeClosed(directory: directory) }
            guard let entry = state.queues[name] else { throw .queueNotFound(name: name) }
            entry?.close(sync: false)
            state.queues[name] = nil
            // Rename first, so that a crash half-way never leaves a queue that looks whole but lost records.
            let path = directory + "/" + encoded
            let doomed = directory + "/" + QueueStore.removalPrefix + encoded
            try StoreFileSystem.rename(path, to: doomed)
            if fsync != .none { try StoreFileSystem.syncDirectory(directory) }
            try StoreFileSystem.removeTree(doomed)
        } }.get()
    }

    /// Runs `job` on the store's I/O thread, after every job submitted before it. For work that may wait for the disk
    /// (``open(name:metadata:)``, ``remove(name:)``) when the caller is an event loop, which must never wait (see
    /// ``BlockingIOCheck``). After ``close()`` the job still runs, on the caller's thread; the store's methods then
    /// throw ``QueueStoreError/storeClosed(directory:)``.
    public func execute(_ job: @escaping @Sendable () -> Void) {
        io.submit { _ in job() }
    }

    /// Syncs every open queue's files, runs the outstanding durability callbacks and stops the sync thread. Later
    /// calls on the store throw ``QueueStoreError/storeClosed(directory:)``; the open queues are closed. Idempotent.
    /// Must not be called from an `onDurable` callback under ``FsyncPolicy/always`` (it would wait for itself; the
    /// store then only detaches its thread).
    public func close() {
        let queues = state.withLockedValue { state -> [DurableQueue]? in
            guard !state.closed else { return nil }
            state.closed = true
            return state.queues.values.compactMap { $0 }
        }
        guard let queues else { return }
        // Jobs already submitted finish first (they find the store closed); later ones run on the caller's thread.
        try? io.syncShutdownGracefully()
        syncer?.stop()
        for queue in queues { queue.close(sync: true) }
        state.withLockedValue { $0.lockFile = nil }  // releases the directory
    }
}
