import NIOCore
import Testing
import ZbusKernel
@testable import ZbusMQ

@Suite("Append batching")
struct AppendBatcherTests {
    /// Stand-ins for two event loops: the batcher only compares their identities.
    final class Loop {}
    let loopA = Loop()
    let loopB = Loop()
    var a: ObjectIdentifier { ObjectIdentifier(loopA) }
    var b: ObjectIdentifier { ObjectIdentifier(loopB) }

    static func message(_ body: String) -> Message {
        var message = Message()
        message.setBody(body)
        return message
    }

    static func bodies(_ batch: AppendBatcher<Int>.Batch) -> [String] {
        batch.messages.map { $0.body.map { String(buffer: $0) } ?? "" }
    }

    @Test("the batch's copy carries the acceptance time given, replacing one the producer's message carried from another MQ")
    func acceptanceTime() {
        var batcher = AppendBatcher<Int>()
        var forwarded = Self.message("from another MQ")
        forwarded.acceptedAt = .uptimeNanoseconds(5)
        _ = batcher.append(forwarded, 1, loop: a, acceptedAt: .uptimeNanoseconds(1_000))
        _ = batcher.append(forwarded, 2, loop: a)
        let batch = batcher.flush(loop: a)
        #expect(batch.messages.map(\.acceptedAt) == [.uptimeNanoseconds(1_000), nil])
        #expect(forwarded.acceptedAt == .uptimeNanoseconds(5), "the producer's own message is left as it was")
    }

    @Test("one flush per loop tick: the first produce schedules it, the rest ride along, in order")
    func oneFlushPerTick() {
        var batcher = AppendBatcher<Int>()
        #expect(batcher.append(Self.message("1"), 1, loop: a) == .scheduleFlush)
        #expect(batcher.append(Self.message("2"), 2, loop: a) == .none)
        #expect(batcher.append(Self.message("3"), 3, loop: a) == .none)
        #expect(batcher.pendingCount == 3)
        let batch = batcher.flush(loop: a)
        #expect(Self.bodies(batch) == ["1", "2", "3"])
        #expect(batch.entries == [1, 2, 3])
        // Written but not yet reported: still pending (what max_length counts).
        #expect(batcher.pendingCount == 3)
        batcher.stored(batch)
        #expect(batcher.pendingCount == 0)
        // The next tick schedules again.
        #expect(batcher.append(Self.message("4"), 4, loop: a) == .scheduleFlush)
    }

    @Test("loops are batched apart: each loop's flush takes only what that loop accepted")
    func loopsApart() {
        var batcher = AppendBatcher<Int>()
        #expect(batcher.append(Self.message("a1"), 1, loop: a) == .scheduleFlush)
        #expect(batcher.append(Self.message("b1"), 2, loop: b) == .scheduleFlush)
        #expect(batcher.append(Self.message("a2"), 3, loop: a) == .none)
        let fromB = batcher.flush(loop: b)
        #expect(Self.bodies(fromB) == ["b1"])
        let fromA = batcher.flush(loop: a)
        #expect(Self.bodies(fromA) == ["a1", "a2"])
        #expect(fromA.entries == [1, 3])
        batcher.stored(fromB)
        #expect(batcher.pendingCount == 2)
        batcher.stored(fromA)
        #expect(batcher.pendingCount == 0)
    }

    @Test("a flush with nothing collected, or of a loop never seen, gives an empty batch")
    func emptyFlushes() {
        var batcher = AppendBatcher<Int>()
        #expect(batcher.flush(loop: a).isEmpty)
        _ = batcher.append(Self.message("x"), 1, loop: a)
        _ = batcher.flush(loop: a)
        #expect(batcher.flush(loop: a).isEmpty)
    }

    @Test("produces accepted while a batch is being written go to the next batch, which a new flush takes")
    func acceptedDuringWrite() {
        var batcher = AppendBatcher<Int>()
        _ = batcher.append(Self.message("1"), 1, loop: a)
        let first = batcher.flush(loop: a)
        // Accepted after the flush took its batch (another connection on the loop, before the write returned).
        #expect(batcher.append(Self.message("2"), 2, loop: a) == .scheduleFlush)
        #expect(batcher.pendingCount == 2)
        batcher.stored(first)
        let second = batcher.flush(loop: a)
        #expect(Self.bodies(second) == ["2"])
        batcher.stored(second)
        #expect(batcher.pendingCount == 0)
    }

    @Test("a refused batch is reported like a stored one: its produces stop counting as pending")
    func refusedBatch() {
        var batcher = AppendBatcher<Int>()
        for index in 0..<5 { _ = batcher.append(Self.message("\(index)"), index, loop: a) }
        let batch = batcher.flush(loop: a)
        #expect(batch.count == 5)
        batcher.stored(batch)
        #expect(batcher.pendingCount == 0)
    }
}
