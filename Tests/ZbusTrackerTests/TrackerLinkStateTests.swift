import Testing
@testable import ZbusKernel

@Suite("Tracker reporting link")
struct TrackerLinkStateTests {
    let backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(1))

    @Test("connects, announces, and after a drop retries at once-quick; failures back off up to the maximum and a success resets")
    func lifecycle() {
        var link = TrackerLinkState(backoff: backoff)
        #expect(link.start() == .connect)
        #expect(link.start() == .none)
        #expect(link.connectFailed() == .retry(after: .milliseconds(100), attempt: 0))
        #expect(link.retryDue() == .connect)
        #expect(link.connectFailed() == .retry(after: .milliseconds(200), attempt: 1))
        #expect(link.retryDue() == .connect)
        #expect(link.connectFailed() == .retry(after: .milliseconds(400), attempt: 2))
        for _ in 0..<10 {
            _ = link.retryDue()
            _ = link.connectFailed()
        }
        #expect(link.retryDue() == .connect)
        #expect(link.connectFailed() == .retry(after: .seconds(1), attempt: 13))
        #expect(link.retryDue() == .connect)
        #expect(link.connected() == .announce)
        link.lasted()
        #expect(link.failures == 0)
        #expect(link.disconnected() == .retry(after: .milliseconds(100), attempt: 0))
        #expect(link.disconnected() == .none)
    }

    @Test("a tracker that accepts and drops at once is redialled with a growing pause, not every 100 ms")
    func flappingTracker() {
        var link = TrackerLinkState(backoff: backoff)
        _ = link.start()
        var pauses: [Duration] = []
        for _ in 0..<5 {
            #expect(link.connected() == .announce)
            guard case .retry(let after, _) = link.disconnected() else {
                Issue.record("a drop must schedule a retry")
                return
            }
            pauses.append(after)
            #expect(link.retryDue() == .connect)
        }
        #expect(pauses == [.milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(800), .seconds(1)])
        // A connection that lasted a refresh interval starts the schedule afresh.
        _ = link.connected()
        link.lasted()
        #expect(link.disconnected() == .retry(after: .milliseconds(100), attempt: 0))
    }

    @Test("a stop says goodbye only when connected, and nothing reconnects after it")
    func stop() {
        var connected = TrackerLinkState(backoff: backoff)
        _ = connected.start()
        _ = connected.connected()
        #expect(connected.stop() == .leave)
        #expect(connected.disconnected() == .none)
        #expect(connected.retryDue() == .none)

        var connecting = TrackerLinkState(backoff: backoff)
        _ = connecting.start()
        #expect(connecting.stop() == .none)
        #expect(connecting.connected() == .close)
        #expect(connecting.connectFailed() == .none)
    }
}
