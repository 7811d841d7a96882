import Testing
@testable import ZbusClient

@Suite("Client: request ids")
struct RequestIdTests {
    @Test("an id is the process's prefix and the counter in base 36, for any counter value")
    func formatMatchesBase36() {
        let prefix = String(RequestId.next().prefix(9))
        #expect(prefix.count == 9 && prefix.last == "-")
        var generator = SystemRandomNumberGenerator()
        let samples: [UInt64] = [0, 1, 35, 36, 37, 1295, 1296, 46_655, 46_656, UInt64(Int64.max), .max - 1, .max]
            + (0..<1000).map { _ in UInt64.random(in: 0 ... .max, using: &generator) >> UInt64.random(in: 0...63, using: &generator) }
        for value in samples {
            #expect(RequestId.format(value) == prefix + String(value, radix: 36), "counter \(value)")
        }
    }

    @Test("consecutive ids of one process differ and share its prefix")
    func idsAreUnique() {
        let ids = (0..<10_000).map { _ in RequestId.next() }
        #expect(Set(ids).count == ids.count)
        #expect(Set(ids.map { $0.prefix(9) }).count == 1)
    }
}
