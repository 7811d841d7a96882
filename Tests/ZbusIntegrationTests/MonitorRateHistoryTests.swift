import Testing
@testable import ZbusMonitorModule

/// The monitor's per-MQ rate history: a ring of the last `capacity` samples, read back oldest first.
@Suite("monitor: rate history")
struct MonitorRateHistoryTests {
    @Test("keeps the last samples in order across the ring's wrap, and answers any suffix")
    func ringOrder() {
        var history = RateHistory(capacity: 5)
        #expect(history.produce(last: 3) == [])
        for value in 1...3 { history.append(produce: Double(value), consume: Double(-value)) }
        #expect(history.produce(last: 10) == [1, 2, 3])
        #expect(history.consume(last: 2) == [-2, -3])
        for value in 4...12 { history.append(produce: Double(value), consume: Double(-value)) }
        #expect(history.produce(last: 5) == [8, 9, 10, 11, 12])
        #expect(history.produce(last: 99) == [8, 9, 10, 11, 12])
        #expect(history.consume(last: 2) == [-11, -12])
        #expect(history.produce(last: 0) == [])
    }
}
