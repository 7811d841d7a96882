import Testing
import ZbusProtocol

/// The retry schedule shared by reconnects, consumer retries and accept pauses.
@Suite("Backoff")
struct BackoffTests {
    /// Always returns the same raw value, so a jittered pause is known in advance.
    struct FixedGenerator: RandomNumberGenerator {
        let value: UInt64
        mutating func next() -> UInt64 { value }
    }

    @Test("the pause grows by the multiplier from the initial one and stops at the maximum")
    func exponential() {
        let backoff = Backoff(initial: .milliseconds(50), maximum: .seconds(2))
        let pauses = (0..<9).map { backoff.delay(attempt: $0) }
        #expect(pauses == [50, 100, 200, 400, 800, 1600, 2000, 2000, 2000].map { Duration.milliseconds($0) })
        let triple = Backoff(initial: .milliseconds(10), multiplier: 3, maximum: .seconds(1))
        #expect((0..<6).map { triple.delay(attempt: $0) } == [10, 30, 90, 270, 810, 1000].map { Duration.milliseconds($0) })
    }

    @Test("huge and negative attempt numbers neither overflow nor go below the initial pause")
    func extremes() {
        let backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(5))
        #expect(backoff.delay(attempt: 10_000) == .seconds(5))
        #expect(backoff.delay(attempt: .max) == .seconds(5))
        #expect(backoff.delay(attempt: -3) == .milliseconds(100))
    }

    @Test("a constant backoff, and out-of-range settings clamped")
    func constantAndClamped() {
        let constant = Backoff.constant(.seconds(1))
        #expect([0, 1, 7].map { constant.delay(attempt: $0) } == [.seconds(1), .seconds(1), .seconds(1)])
        let odd = Backoff(initial: .milliseconds(200), multiplier: 0.5, maximum: .milliseconds(10), jitter: 7)
        #expect(odd.multiplier == 1)
        #expect(odd.maximum == .milliseconds(200))
        #expect(odd.jitter == 1)
        #expect(odd.delay(attempt: 4) == .milliseconds(200))
        #expect(Backoff(initial: .zero, maximum: .seconds(1)).delay(attempt: 5) == .zero)
    }

    @Test("jitter takes off at most its share, and nothing when zero")
    func jitter() {
        let backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(10), jitter: 0.5)
        var lowest = FixedGenerator(value: 0)  // random 0: nothing taken off
        #expect(backoff.delay(attempt: 2, using: &lowest) == .milliseconds(400))
        var highest = FixedGenerator(value: .max)  // random just below 1: almost half taken off
        let shortest = backoff.delay(attempt: 2, using: &highest)
        #expect(shortest >= .milliseconds(200) && shortest < .milliseconds(201))
        var any = SystemRandomNumberGenerator()
        for attempt in 0..<20 {
            let pause = backoff.delay(attempt: attempt, using: &any)
            #expect(pause <= backoff.delay(attempt: attempt) && pause >= backoff.delay(attempt: attempt) / 2)
        }
        var unused = FixedGenerator(value: .max)
        #expect(Backoff(initial: .milliseconds(100), maximum: .seconds(1)).delay(attempt: 1, using: &unused) == .milliseconds(200))
    }
}
