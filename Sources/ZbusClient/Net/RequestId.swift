import Atomics

/// Request ids for this process: a random prefix and a counter, unique among the requests of every connection the
/// process opens and very unlikely to meet another process's.
///
/// The code that builds a request gives it its id (``Producer``, ``Consumer``, the RPC invokers), while it still owns
/// the message: adding the id later, in ``MessageClient``, would copy the header block of a message the caller still
/// holds.
package enum RequestId {
    private static let digits: [UInt8] = Array("0123456789abcdefghijklmnopqrstuvwxyz".utf8)
    /// Eight random base-36 digits and a dash.
    private static let prefix: [UInt8] = {
        var generator = SystemRandomNumberGenerator()
        return (0..<8).map { _ in digits[Int.random(in: 0..<digits.count, using: &generator)] } + [UInt8(ascii: "-")]
    }()
    private static let counter = ManagedAtomic<UInt64>(0)

    /// A new id.
    package static func next() -> String {
        format(counter.loadThenWrappingIncrement(ordering: .relaxed))
    }

    /// The id for counter value `value`: the prefix and `value` in base 36. Written by hand because the generic
    /// `String(_:radix:)` costs more than the rest of building a consume request (one id per request).
    package static func format(_ value: UInt64) -> String {
        // 13 base-36 digits hold any UInt64.
        String(unsafeUninitializedCapacity: prefix.count + 13) { buffer in
            var index = 0
            for byte in prefix {
                buffer[index] = byte
                index += 1
            }
            var remaining = value
            var digitCount = 0
            repeat {
                digitCount += 1
                remaining /= 36
            } while remaining > 0
            remaining = value
            var position = index + digitCount
            repeat {
                position -= 1
                buffer[position] = digits[Int(remaining % 36)]
                remaining /= 36
            } while remaining > 0
            return index + digitCount
        }
    }
}
