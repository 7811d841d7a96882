import Atomics

/// Request ids for this process: a random prefix and a counter, unique among the requests of every connection the
/// process opens and very unlikely to meet another process's.
///
/// The code that builds a request gives it its id (``Producer``, ``Consumer``, the RPC invokers), while it still owns
/// the message: adding the id later, in ``MessageClient``, would copy the header block of a message the caller still
/// holds.
package enum RequestId {
    private static let prefix: String = {
        let alphabet = Array("0123456789abcdefghijklmnopqrstuvwxyz")
        var generator = SystemRandomNumberGenerator()
        return String((0..<8).map { _ in alphabet[Int.random(in: 0..<alphabet.count, using: &generator)] }) + "-"
    }()
    private static let counter = ManagedAtomic<UInt64>(0)

    /// A new id.
    package static func next() -> String {
        prefix + String(counter.loadThenWrappingIncrement(ordering: .relaxed), radix: 36)
    }
}
