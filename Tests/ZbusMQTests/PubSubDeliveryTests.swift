import NIOCore
import Testing
import ZbusKernel

@testable import ZbusMQ

/// Pub/sub delivery without sockets: topics, fan-out and the bounded subscriber buffers.
@Suite("Pub/sub delivery")
struct PubSubDeliveryTests {
    @Test("a message reaches every subscriber of its topic and those of *; one without a topic only those of *")
    func topics() {
        var machine = PubSubDelivery<TestPeer>(mq: "T", maxParked: 100, bufferLimit: 10, bufferBytes: 1 << 20)
        let (a, b, all) = (TestPeer("A"), TestPeer("B"), TestPeer("All"))
        machine.consume(a, "a1", topics: ["news", "sport"])
        machine.consume(b, "b1", topics: ["weather"])
        machine.consume(all, "s1", topics: ["*"])
        #expect(machine.consumerCount == 3 && machine.roster.parkedCount == 3)
        #expect(machine.publish("n1", topic: "news").sent.sorted() == ["A<-n1#a1", "All<-n1#s1"])
        // Not parked any more: the next ones wait in the buffers.
        #expect(machine.publish("w1", topic: "weather").sent == ["B<-w1#b1"])
        #expect(machine.publish("x1", topic: nil).sent == [])
        #expect(machine.bufferedCount == 2, "w1 and x1 for All")
        #expect(machine.consume(all, "s2", topics: nil) == ["All<-w1#s2"], "the previous topics are kept")
        #expect(machine.consume(all, "s3", topics: nil) == ["All<-x1#s3"])
        #expect(machine.consume(a, "a2", topics: ["weather"]) == [], "A's buffer is empty; its topics change")
        #expect(machine.publish("n2", topic: "news").sent == [], "A no longer takes news; All is not parked")
        #expect(machine.publish("w2", topic: "weather").sent == ["A<-w2#a2"])
    }

    @Test("a subscriber's buffer drops its oldest messages beyond subscriber_buffer, and counts them")
    func boundedInCount() {
        var machine = PubSubDelivery<TestPeer>(mq: "T", maxParked: 100, bufferLimit: 2, bufferBytes: 1 << 20)
        let a = TestPeer("A")
        #expect(machine.consume(a, "a1", topics: ["*"], wait: .immediate) == ["A:204#a1"])
        #expect(machine.publish("m1", topic: "x").report == nil)
        #expect(machine.publish("m2", topic: "x").report == nil)
        let first = machine.publish("m3", topic: "x")
        #expect(first.report?.total == 1 && first.report?.peer === a, "the first drop is reported")
        #expect(machine.publish("m4", topic: "x").report == nil, "then one report per thousand")
        #expect(machine.dropped == 2)
        #expect(machine.consume(a, "a2", topics: nil) == ["A<-m3#a2"])
        #expect(machine.consume(a, "a3", topics: nil) == ["A<-m4#a3"])
        #expect(machine.consume(a, "a4", topics: nil) == [])
    }

    @Test("a subscriber's buffer holds at most subscriber_buffer_bytes")
    func boundedInBytes() {
        let size = MessageSerializer.estimatedHeadSize(published("m1", topic: "x")) + 2
        var machine = PubSubDelivery<TestPeer>(mq: "T", maxParked: 100, bufferLimit: 100, bufferBytes: 2 * size)
        let a = TestPeer("A")
        machine.consume(a, "a1", topics: ["x"], wait: .immediate)
        machine.publish("m1", topic: "x")
        machine.publish("m2", topic: "x")
        #expect(machine.dropped == 0)
        machine.publish("m3", topic: "x")
        #expect(machine.dropped == 1 && machine.bufferedCount == 2)
        #expect(machine.consume(a, "a2", topics: nil) == ["A<-m2#a2"])
    }

    @Test("a closed subscriber gets nothing more; one whose connection is gone is skipped")
    func closedSubscribers() {
        var machine = PubSubDelivery<TestPeer>(mq: "T", maxParked: 100, bufferLimit: 10, bufferBytes: 1 << 20)
        let (a, b) = (TestPeer("A"), TestPeer("B"))
        machine.consume(a, "a1", topics: ["*"])
        machine.consume(b, "b1", topics: ["*"])
        b.isActive = false
        #expect(machine.publish("m1", topic: nil).sent == ["A<-m1#a1"])
        machine.peerClosed(a)
        machine.peerClosed(b)
        #expect(machine.consumerCount == 0 && machine.roster.parkedCount == 0)
        #expect(machine.publish("m2", topic: nil).sent == [] && machine.bufferedCount == 0)
    }

    @Test("wait limits and max_parked_consumes apply to subscribers too; a removed MQ ends their consumes with 404")
    func waitLimitsAndClose() {
        var machine = PubSubDelivery<TestPeer>(mq: "T", maxParked: 1, bufferLimit: 10, bufferBytes: 1 << 20)
        let (a, b) = (TestPeer("A"), TestPeer("B"))
        var actions = DeliveryActions<TestPeer>()
        let outcome = machine.consume(from: a, reply: pull("a1"), topics: ["*"], wait: .until(t(50), now: t(0)), into: &actions)
        #expect(outcome.isNewConsumer && outcome.timer == .arm(at: t(50), generation: 1))
        #expect(machine.consume(b, "b1", topics: ["*"]) == ["B:429#b1"])
        var expired = DeliveryActions<TestPeer>()
        #expect(machine.expire(generation: 1, now: t(50), into: &expired) == nil)
        #expect(describe(expired) == ["A:204#a1"])
        machine.consume(b, "b2", topics: nil)
        var closed = DeliveryActions<TestPeer>()
        #expect(machine.close(into: &closed) == .cancel)
        #expect(describe(closed) == ["B:404#b2"])
    }
}
