/// When the queue store forces appended records from the page cache to the disk.
///
/// Every policy writes each append to the kernel with `write(2)` before ``DurableQueue/append(_:onDurable:)`` returns,
/// so a killed process never loses an acknowledged record; the policies differ in what survives a power loss.
public enum FsyncPolicy: Sendable, Equatable, CustomStringConvertible {
    /// Never sync explicitly (only on ``QueueStore/close()``): the operating system writes back when it likes.
    case none
    /// A background thread syncs every file written to in the last `milliseconds`: a power loss costs at most about
    /// that much of the latest records.
    case interval(milliseconds: Int)
    /// Group commit: a record is acknowledged only after an `fdatasync` that covers it; one sync acknowledges every
    /// record appended while the previous one ran.
    case always

    public var description: String {
        switch self {
        case .none: return "none"
        case .interval(let milliseconds): return "interval(\(milliseconds) ms)"
        case .always: return "always"
        }
    }
}
