#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a queue store operation failed.
public enum QueueStoreError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A system call on the file or directory `path` failed; `operation` says which (`open`, `write`,
    /// `fdatasync`, ...) and `errno` why.
    case io(path: String, operation: String, errno: Int32)
    /// The queue name cannot be stored (empty, or too long once encoded as a directory name).
    case invalidQueueName(name: String, reason: String)
    /// No queue of that name exists in the store.
    case queueNotFound(name: String)
    /// The queue was removed or its store closed; reopen it through ``QueueStore/open(name:metadata:)``.
    case queueClosed(name: String)
    /// The store was closed.
    case storeClosed(directory: String)
    /// Another store (most likely another process) has the directory open.
    case directoryInUse(directory: String)
    /// A record is larger than the store can frame.
    case recordTooLarge(queue: String, size: Int, limit: Int)
    /// A record has no bytes (the store never writes empty records, so that a zero-filled tail reads as damage).
    case emptyRecord(queue: String)
    /// A file the store reads as a whole (metadata) is damaged.
    case corruptFile(path: String, reason: String)
    /// Reading on an event loop found bytes that are not in the page cache; they are being read ahead on the store's
    /// I/O thread (internal: ``DurableQueue/next()`` reports it as "nothing yet" and tells the readable handler).
    case notCached(path: String, offset: Int64)

    public var description: String {
        switch self {
        case .io(let path, let operation, let code):
            return "\(operation) failed on \(path): \(QueueStoreError.describe(errno: code)) (errno \(code))"
        case .invalidQueueName(let name, let reason):
            return "invalid queue name '\(name)': \(reason)"
        case .queueNotFound(let name):
            return "queue '\(name)' does not exist in the store"
        case .queueClosed(let name):
            return "queue '\(name)' is closed (removed, or its store was closed); open it again through the store"
        case .storeClosed(let directory):
            return "the queue store at \(directory) is closed"
        case .directoryInUse(let directory):
            return "the queue store at \(directory) is in use by another process (\(directory)/.lock is locked); stop it or choose another store directory"
        case .recordTooLarge(let queue, let size, let limit):
            return "record of \(size) bytes for queue '\(queue)' exceeds the store's limit of \(limit) bytes"
        case .emptyRecord(let queue):
            return "empty record for queue '\(queue)': the store only keeps records of at least one byte"
        case .notCached(let path, let offset):
            return "\(path): bytes at offset \(offset) are not in memory yet (being read ahead)"
        case .corruptFile(let path, let reason):
            return "\(path) is damaged: \(reason); restore it from a backup or delete it to start over"
        }
    }

    static func describe(errno code: Int32) -> String {
        guard let text = strerror(code) else { return "unknown error" }
        return String(cString: text)
    }
}
