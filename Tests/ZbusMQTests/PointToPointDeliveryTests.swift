import NIOCore
import Testing

@testable import ZbusMQ

/// Point-to-point delivery without sockets: the state machine, its actions, and a store stand-in.
@Suite("Point-to-point delivery")
struct PointToPointDeliveryTests {
    @Test("one consumer gets the messages in the order they were stored")
    func fifo() {
        var machine = PointToPointDelivery<TestPeer>(mq: "Q", maxParked: 100)
        var store = TestStore()
        let a = TestPeer("A")
        store.store("m1", "m2", "m3")
        #expect(machine.consume(a, "1", from: &store).sent == ["A<-m1#1"])
        #expect(machine.consume(a, "2", from: &store).sent == ["A<-m2#2"])
        #expect(machine.consume(a, "3", from: &store).sent == ["A<-m3#3"])
        #expect(machine.consume(a, "4", from: &store).sent == [], "parked: nothing left")
        store.store("m4")
        #expect(machine.dispatch(from: &store) == ["A<-m4#4"])
    }

    @Test("competing consumers are served first come first served, one message each")
    func competingConsumers() {
        var machine = PointToPointDelivery<TestPeer>(mq: "Q", maxParked: 100)
        var store = TestStore()
        let (a, b, c) = (TestPeer("A"), TestPeer("B"), TestPeer("C"))
        machine.consume(a, "a1", from: &store)
        machine.consume(b, "b1", from: &store)
        machine.consume(c, "c1", from: &store)
        #expect(machine.roster.parkedCount == 3)
        store.store("m1", "m2")
        #expect(machine.dispatch(from: &store) == ["A<-m1#a1", "B<-m2#b1"])
        // A comes back behind C.
        #expect(machine.consume(a, "a2", from: &store).sent == [])
        store.store("m3", "m4", "m5")
        #expect(machine.dispatch(from: &store) == ["C<-m3#c1", "A<-m4#a2"])
        #expect(store.pendingCount == 1, "nobody left waiting: m5 stays in the store")
        #expect(machine.consumerCount == 3)
    }

    @Test("loop workers of the delivering loop take a message ahead of other loops' workers, never ahead of other consumers")
    func loopWorkersOfThisLoopFirst() {
        var machine = PointToPointDelivery<TestPeer>(mq: "Q", maxParked: 100)
        var store = TestStore()
        // W1, W2 work on another loop, L1, L2 on the loop that dispatches; T is a TCP consumer.
        let (w1, w2) = (TestPeer("W1", loopWorker: true), TestPeer("W2", loopWorker: true))
        let (l1, l2) = (TestPeer("L1", loopWorker: true, onCurrentLoop: true), TestPeer("L2", loopWorker: true, onCurrentLoop: true))
        let tcp = TestPeer("T")
        for (peer, id) in [(w1, "w1"), (l1, "l1"), (w2, "w2"), (l2, "l2")] { machine.consume(peer, id, from: &store) }
        store.store("m1", "m2", "m3", "m4", "m5")
        // The local workers first, in their order; then the rest of the line as it stood.
        #expect(machine.dispatch(from: &store) == ["L1<-m1#l1", "L2<-m2#l2", "W1<-m3#w1", "W2<-m4#w2"])

        // Behind a consumer that is not a loop worker, nobody jumps ahead of it.
        #expect(machine.consume(w1, "w1b", from: &store).sent == ["W1<-m5#w1b"])
        for (peer, id) in [(w1, "w1c"), (tcp, "t"), (l1, "l1b")] { machine.consume(peer, id, from: &store) }
        store.store("m6", "m7")
        #expect(machine.dispatch(from: &store) == ["W1<-m6#w1c", "T<-m7#t"])

        // A local worker whose connection is gone is not chosen.
        for (peer, id) in [(w2, "w2c"), (l2, "l2c")] { machine.consume(peer, id, from: &store) }
        l1.isActive = false
        l2.isActive = false
        store.store("m8")
        #expect(machine.dispatch(from: &store) == ["W2<-m8#w2c"])
    }

    @Test("a second consume of a parked consumer keeps its place in line and its id wins")
    func replacementKeepsPlace() {
        var machine = PointToPointDelivery<TestPeer>(mq: "Q", maxParked: 100)
        var store = TestStore()
        let (a, b) = (TestPeer("A"), TestPeer("B"))
        machine.consume(a, "a1", from: &store)
        machine.consume(b, "b1", from: &store)
        machine.consume(a, "a2", from: &store)
        #expect(machine.roster.parkedCount == 2)
        store.store("m1", "m2")
        #expect(machine.dispatch(from: &store) == ["A<-m1#a2", "B<-m2#b1"])
        #expect(machine.parkedPeers.isEmpty)
    }

    @Test("a consumer whose connection is gone is skipped, and its place in line is not kept")
    func inactiveConsumerSkipped() {
        var machine = PointToPointDelivery<TestPeer>(mq: "Q", maxParked: 100)
        var store = TestStore()
        let (a, b) = (TestPeer("A"), TestPeer("B"))
        machine.consume(a, "a1", from: &store)
        machine.consume(b, "b1", from: &store)
        a.isActive = false
        store.store("m1")
        #expect(machine.dispatch(from: &store) == ["B<-m1#b1"])
        #expect(machine.roster.parkedCount == 0)
    }

    @Test("what a closed consumer held goes back to the head, ahead of the store, to the next consumer")
    func redeliveryOnDisconnect() {
        var machine = PointToPointDelivery<TestPeer>(mq: "Q", maxParked: 100)
        var store = TestStore()
        let (a, b, c) = (TestPeer("A"), TestPeer("B"), TestPeer("C"))
        store.store("m1", "m2", "m3")
        #expect(machine.consume(a, "a1", from: &store).sent == ["A<-m1#a1"])
        #expect(machine.consume(b, "b1", from: &store).sent == ["B<-m2#b1"])
        #expect(machine.inFlightCount == 2)
        // Nobody waits: m1 waits for the next consume, ahead of m3.
        #expect(machine.close(a, from: &store) == [])
        #expect(machine.inFlightCount == 1 && machine.redeliveryCount == 1)
        #expect(machine.consume(c, "c1", from: &store).sent == ["C<-m1#c1"])
        #expect(machine.consume(c, "c2", from: &store).sent == ["C<-m3#c2"])
        // A consumer waiting gets a closed one's message at once.
        #expect(machine.consume(c, "c3", from: &store).sent == [])
        #expect(machine.close(b, from: &store) == ["C<-m2#c3"])
        #expect(machine.consumerCount == 1 && machine.inFlightCount == 1 && machine.redeliveryCount == 0)
        // A closed consumer's parked consume goes too.
        #expect(machine.close(c, from: &store) == [])
        #expect(machine.roster.parkedCount == 0 && machine.consumerCount == 0 && machine.redeliveryCount == 1)
    }

    @Test("max_length counts what is held and what waits to be delivered again")
    func maxLengthCounting() {
        var machine = PointToPointDelivery<TestPeer>(mq: "Q", maxParked: 100)
        var store = TestStore()
        let (a, b) = (TestPeer("A"), TestPeer("B"))
        store.store("m1", "m2", "m3")
        machine.consume(a, "a1", from: &store)
        machine.consume(b, "b1", from: &store)
        #expect(machine.inFlightCount + machine.redeliveryCount + store.pendingCount == 3)
        _ = machine.close(a, from: &store)
        #expect(machine.inFlightCount + machine.redeliveryCount + store.pendingCount == 3)
        machine.consume(b, "b2", from: &store)  // acknowledges m2, gets m1 again
        #expect(machine.inFlightCount == 1 && machine.redeliveryCount == 0 && store.pendingCount == 1)
    }

    @Test("a wait limit that passes ends the consume with 204; an answered consume leaves only a stale deadline")
    func waitLimits() {
        var machine = PointToPointDelivery<TestPeer>(mq: "Q", maxParked: 100)
        var store = TestStore()
        let (a, b) = (TestPeer("A"), TestPeer("B"))
        let first = machine.consume(a, "a1", wait: .until(t(100), now: t(0)), from: &store)
        #expect(first.sent == [])
        #expect(first.outcome.timer == .arm(at: t(100), generation: 1))
        // A later limit does not move the armed timer.
        #expect(machine.consume(b, "b1", wait: .until(t(300), now: t(10)), from: &store).outcome.timer == nil)
        // Fired early (timers may): nothing due, the timer is armed again for A's limit.
        let early = machine.expire(generation: 1, at: t(50))
        #expect(early.sent == [] && early.timer == .arm(at: t(100), generation: 2))
        let due = machine.expire(generation: 2, at: t(100))
        #expect(due.sent == ["A:204#a1"])
        #expect(due.timer == .arm(at: t(300), generation: 3))
        // B is served before its limit: when the timer fires, nothing is left to end.
        store.store("m1")
        #expect(machine.dispatch(from: &store) == ["B<-m1#b1"])
        let late = machine.expire(generation: 3, at: t(300))
        #expect(late.sent == [] && late.timer == nil)
        #expect(machine.roster.parkedCount == 0 && machine.roster.timedCount == 0)
    }

    @Test("timeout 0 answers at once: a message if one is there, else 204")
    func immediateWait() {
        var machine = PointToPointDelivery<TestPeer>(mq: "Q", maxParked: 100)
        var store = TestStore()
        let a = TestPeer("A")
        #expect(machine.consume(a, "a1", wait: .immediate, from: &store).sent == ["A:204#a1"])
        store.store("m1")
        #expect(machine.consume(a, "a2", wait: .immediate, from: &store).sent == ["A<-m1#a2"])
        #expect(machine.roster.parkedCount == 0)
    }

    @Test("short wait limits arm one timer per granularity, and a superseded timer that fires does not re-arm")
    func timerGranularity() {
        var machine = PointToPointDelivery<TestPeer>(mq: "Q", maxParked: 100)
        var store = TestStore()
        let (a, b, c) = (TestPeer("A"), TestPeer("B"), TestPeer("C"))
        // No sooner than the granularity (20 ms) after now.
        #expect(machine.consume(a, "a1", wait: .until(t(5), now: t(0)), from: &store).outcome.timer == .arm(at: t(20), generation: 1))
        #expect(machine.consume(b, "b1", wait: .until(t(8), now: t(1)), from: &store).outcome.timer == nil)
        // A later limit leaves it too.
        #expect(machine.consume(c, "c1", wait: .until(t(1000), now: t(2)), from: &store).outcome.timer == nil)
        let stale = machine.expire(generation: 0, at: t(20))
        #expect(stale.sent == ["A:204#a1", "B:204#b1"])
        #expect(stale.timer == nil, "a superseded timer leaves the arming to the current one")
        let current = machine.expire(generation: 1, at: t(20))
        #expect(current.sent == [] && current.timer == .arm(at: t(1000), generation: 2))
        // A limit sooner than the armed timer by more than the granularity re-arms it.
        #expect(machine.consume(TestPeer("D"), "d1", wait: .until(t(30), now: t(21)), from: &store).outcome.timer == .arm(at: t(41), generation: 3))
    }

    @Test("consumes beyond max_parked_consumes are refused with 429; a consume answered at once is not counted")
    func maxParkedConsumes() {
        var machine = PointToPointDelivery<TestPeer>(mq: "Q", maxParked: 2)
        var store = TestStore()
        let (a, b, c) = (TestPeer("A"), TestPeer("B"), TestPeer("C"))
        machine.consume(a, "a1", from: &store)
        machine.consume(b, "b1", wait: .until(t(100), now: t(0)), from: &store)
        #expect(machine.consume(c, "c1", wait: .until(t(100), now: t(0)), from: &store).sent == ["C:429#c1"])
        // A replacement takes no new place.
        #expect(machine.consume(a, "a2", from: &store).sent == [])
        #expect(machine.roster.parkedCount == 2 && machine.roster.timedCount == 1)
        // A message for the front of the line makes room: C's next consume stays parked.
        store.store("m1")
        #expect(machine.consume(c, "c2", from: &store).sent == ["A<-m1#a2"])
        #expect(machine.roster.parkedCount == 2)
        #expect(machine.consume(TestPeer("D"), "d1", from: &store).sent == ["D:429#d1"])
    }

    @Test("acknowledgements out of order move the commit only over acknowledged messages, one commit per tick")
    func commitBookkeeping() {
        var machine = PointToPointDelivery<TestPeer>(mq: "Q", maxParked: 100)
        var store = TestStore()
        let (a, b, c) = (TestPeer("A"), TestPeer("B"), TestPeer("C"))
        store.store("m1", "m2", "m3", "m4")
        machine.consume(a, "a1", from: &store)  // 1
        machine.consume(b, "b1", from: &store)  // 2
        machine.consume(c, "c1", from: &store)  // 3
        // B acknowledges 2 (and gets 4): 1 is still out, the commit stays.
        let b2 = machine.consume(b, "b2", from: &store)
        #expect(b2.sent == ["B<-m4#b2"] && !b2.outcome.commitDue)
        // A acknowledges 1: everything through 2 is acknowledged.
        #expect(machine.consume(a, "a2", from: &store).outcome.commitDue)
        #expect(machine.ledger.committed == 2)
        // C acknowledges 3 before the commit ran: the bound moves, no second commit is scheduled.
        #expect(!machine.consume(c, "c2", from: &store).outcome.commitDue)
        #expect(machine.takeCommit() == 3)
        // 4 is held by B; what was acknowledged above the commit: nothing.
        #expect(machine.ledger.acknowledgedAboveCommit == [])
        #expect(machine.consume(b, "b3", from: &store).outcome.commitDue)
        #expect(machine.takeCommit() == 4)
    }

    @Test("a removed MQ ends every parked consume with 404, in line order, and cancels its timer")
    func closeEndsParked() {
        var machine = PointToPointDelivery<TestPeer>(mq: "Q", maxParked: 100)
        var store = TestStore()
        let (a, b) = (TestPeer("A"), TestPeer("B"))
        machine.consume(b, "b1", wait: .until(t(100), now: t(0)), from: &store)
        machine.consume(a, "a1", from: &store)
        var actions = DeliveryActions<TestPeer>()
        #expect(machine.close(into: &actions) == .cancel)
        #expect(describe(actions) == ["B:404#b1", "A:404#a1"])
        #expect(machine.expire(generation: 1, at: t(100)).sent == [], "the cancelled limit is gone")
    }

    @Test("the actions of one consume need no array: a single delivery is held inline")
    func actionsInline() {
        var actions = DeliveryActions<TestPeer>()
        #expect(actions.isEmpty)
        actions.append(.end(.nothingCame, mq: "Q", to: TestPeer("A"), reply: pull("1")))
        actions.append(.end(.queueRemoved, mq: "Q", to: TestPeer("B"), reply: pull("2")))
        #expect(actions.count == 2 && describe(actions) == ["A:204#1", "B:404#2"])
    }
}

/// The acknowledgement bookkeeping alone.
@Suite("Acknowledgement ledger")
struct AcknowledgementLedgerTests {
    @Test("the commit bound is the sequence below the oldest unacknowledged one")
    func outOfOrder() {
        var ledger = AcknowledgementLedger()
        for sequence: UInt64 in 1...6 { ledger.handedOut(sequence) }
        for sequence: UInt64 in [2, 3, 5] { ledger.acknowledge(sequence) }
        var moved = ledger.settle()
        #expect(!moved)
        #expect(ledger.committed == 0)
        #expect(ledger.acknowledgedAboveCommit == [2...3, 5...5])
        ledger.acknowledge(1)
        moved = ledger.settle()
        #expect(moved)
        #expect(ledger.committed == 3 && ledger.acknowledgedAboveCommit == [5...5])
        ledger.acknowledge(1)  // again: no effect
        ledger.acknowledge(99)  // never handed out: no effect
        moved = ledger.settle()
        #expect(!moved)
        #expect(ledger.takeCommit() == 3)
        ledger.acknowledge(4)
        ledger.acknowledge(6)
        moved = ledger.settle()
        #expect(moved)
        #expect(ledger.takeCommit() == 6 && ledger.outstandingCount == 0)
    }

    @Test("behind one message held for ever, acknowledged entries are trimmed: the ledger stays small")
    func trimmedBehindAHeldMessage() {
        var ledger = AcknowledgementLedger()
        for sequence: UInt64 in 1...1000 { ledger.handedOut(sequence) }
        for sequence in 2...1000 {
            ledger.acknowledge(UInt64(sequence))
            _ = ledger.settle()
        }
        #expect(ledger.committed == 0)
        #expect(ledger.outstandingCount < 200)
        #expect(ledger.acknowledgedAboveCommit == [2...1000])
        ledger.acknowledge(1)
        let moved = ledger.settle()
        #expect(moved && ledger.committed == 1000 && ledger.outstandingCount == 0)
    }

    @Test("a sequence handed out below the last one keeps the order")
    func outOfOrderHandOut() {
        var ledger = AcknowledgementLedger()
        ledger.handedOut(1)
        ledger.handedOut(3)
        ledger.handedOut(2)
        ledger.acknowledge(1)
        ledger.acknowledge(2)
        let moved = ledger.settle()
        #expect(moved && ledger.committed == 2)
        #expect(ledger.highestHandedOut == 3)
    }
}
