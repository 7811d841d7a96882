/// How long to pause before each retry of something that failed: a reconnect, a consume, a service start, an accept.
///
/// The pause before retry `attempt` (0 for the first) is `initial × multiplier^attempt`, capped at `maximum`; with
/// `jitter` > 0 a random share of up to `jitter` of it is taken off, so that many clients that lost the same node do not
/// come back in lockstep. A value type and a pure function of the attempt number: the caller counts its attempts (and
/// resets the count when one succeeds), which keeps the schedule testable without clocks.
///
/// ```swift
/// let backoff = Backoff(initial: .milliseconds(50), maximum: .seconds(2))
/// backoff.delay(attempt: 0)   // 50 ms
/// backoff.delay(attempt: 3)   // 400 ms
/// backoff.delay(attempt: 9)   // 2 s (the maximum)
/// ```
public struct Backoff: Sendable, Hashable, CustomStringConvertible {
    /// The pause before the first retry.
    public var initial: Duration
    /// The factor each further pause grows by (1 for a constant pause).
    public var multiplier: Double
    /// The longest pause.
    public var maximum: Duration
    /// The largest share (0...1) of a pause that is randomly taken off; 0 makes every pause exact.
    public var jitter: Double

    /// Creates a schedule; `multiplier` below 1 is taken as 1, `maximum` below `initial` as `initial`, and `jitter`
    /// is clamped to 0...1.
    ///
    /// - Parameters:
    ///   - initial: the pause before the first retry.
    ///   - multiplier: the growth factor of each further pause; doubling by default.
    ///   - maximum: the cap.
    ///   - jitter: the largest share of a pause that is randomly taken off; none by default.
    public init(initial: Duration, multiplier: Double = 2, maximum: Duration, jitter: Double = 0) {
        self.initial = max(.zero, initial)
        self.multiplier = multiplier.isFinite ? max(1, multiplier) : 1
        self.maximum = max(self.initial, maximum)
        self.jitter = jitter.isFinite ? min(1, max(0, jitter)) : 0
    }

    /// The same pause before every retry.
    public static func constant(_ delay: Duration) -> Backoff {
        Backoff(initial: delay, multiplier: 1, maximum: delay)
    }

    /// The pause before retry `attempt` (0 for the first; a negative one counts as 0), without jitter: the longest
    /// the jittered pause can be.
    public func delay(attempt: Int) -> Duration {
        let attempt = max(0, attempt)
        guard multiplier > 1, initial < maximum else { return initial }
        // In floating point the power may overflow to infinity; the cap is applied before converting back.
        let nanoseconds = Self.nanoseconds(initial) * Self.power(multiplier, attempt)
        let cap = Self.nanoseconds(maximum)
        return nanoseconds >= cap ? maximum : .nanoseconds(Int64(nanoseconds.rounded()))
    }

    /// The pause before retry `attempt`, with up to ``jitter`` of it taken off at random.
    ///
    /// - Parameters:
    ///   - attempt: 0 for the first retry.
    ///   - generator: the source of randomness (a seeded one in tests).
    public func delay<Generator: RandomNumberGenerator>(attempt: Int, using generator: inout Generator) -> Duration {
        let full = delay(attempt: attempt)
        guard jitter > 0 else { return full }
        let share = Double.random(in: 0..<1, using: &generator) * jitter
        return .nanoseconds(Int64((Self.nanoseconds(full) * (1 - share)).rounded()))
    }

    /// The pause before retry `attempt`, with jitter drawn from the system's generator.
    public func randomizedDelay(attempt: Int) -> Duration {
        var generator = SystemRandomNumberGenerator()
        return delay(attempt: attempt, using: &generator)
    }

    /// For logs: `50ms×2…2s` (and `±jitter`), or the constant pause.
    public var description: String {
        if multiplier == 1 || initial == maximum { return "\(initial) each" }
        let base = "\(initial)×\(multiplier)…\(maximum)"
        return jitter > 0 ? "\(base) -\(Int(jitter * 100))%" : base
    }

    private static func nanoseconds(_ duration: Duration) -> Double {
        let (seconds, attoseconds) = duration.components
        return Double(seconds) * 1e9 + Double(attoseconds) / 1e9
    }

    /// `base^exponent` by squaring: no Foundation for `pow`.
    private static func power(_ base: Double, _ exponent: Int) -> Double {
        var result = 1.0
        var base = base
        var exponent = exponent
        while exponent > 0 {
            if exponent & 1 == 1 { result *= base }
            base *= base
            exponent >>= 1
            if result.isInfinite { break }
        }
        return result
    }
}
