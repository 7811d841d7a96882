/// Polls `condition` every 20 ms until it holds or `seconds` pass; returns whether it held.
///
/// Only for state that announces nothing (what a node holds, what a callback recorded): wait for an event (a reply, a
/// log line, a process exit) wherever there is one.
public func eventually(within seconds: Double = 10, _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return try await condition()
}
