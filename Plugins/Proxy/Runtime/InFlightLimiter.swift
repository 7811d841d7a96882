import NIOConcurrencyHelpers

/// Bounds how many legacy calls run at once (`max_in_flight`); callers beyond the bound wait their turn, in order, but
/// not past their deadline: a slow service then turns extra load into quick refusals rather than a growing queue of
/// calls that would reach it long after their callers gave up.
final class InFlightLimiter: Sendable {
    /// No slot came free before the caller's deadline.
    struct Saturated: Error {}

    private struct Waiter {
        let ticket: Int
        let continuation: CheckedContinuation<Void, any Error>
        /// Takes the waiter out at its deadline (cancelled when a slot reaches it first).
        let timer: Task<Void, Never>
    }

    private struct State {
        var available: Int
        var nextTicket = 0
        var waiters: [Waiter] = []
    }

    /// The bound.
    let limit: Int
    private let state: NIOLockedValueBox<State>

    init(limit: Int) {
        self.limit = max(1, limit)
        state = NIOLockedValueBox(State(available: max(1, limit)))
    }

    /// Runs `body` once a slot is free, if one comes free before `deadline`.
    ///
    /// - Throws: ``Saturated`` when every slot stayed busy until `deadline` (`body` did not run); `CancellationError`
    ///   when cancelled while waiting; whatever `body` throws.
    func withSlot<T: Sendable>(deadline: ContinuousClock.Instant, _ body: () async throws -> T) async throws -> T {
        try await acquire(deadline: deadline)
        defer { release() }
        return try await body()
    }

    private func acquire(deadline: ContinuousClock.Instant) async throws {
        // The common case, a free slot, costs one lock and no timer.
        let ticket: Int? = state.withLockedValue { state in
            if state.available > 0 {
                state.available -= 1
                return nil
            }
            state.nextTicket += 1
            return state.nextTicket
        }
        guard let ticket else { return }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let cancelled = state.withLockedValue { state -> Bool in
                    if Task.isCancelled { return true }
                    // Made under the lock, so the timer cannot look for the waiter before it is in the list.
                    let timer = Task {
                        do { try await Task.sleep(until: deadline, clock: .continuous) } catch { return }
                        self.remove(ticket, resumingWith: Saturated())
                    }
                    state.waiters.append(Waiter(ticket: ticket, continuation: continuation, timer: timer))
                    return false
                }
                if cancelled { continuation.resume(throwing: CancellationError()) }
            }
        } onCancel: {
            remove(ticket, resumingWith: CancellationError())
        }
    }

    /// Takes a waiter out of the line (expired or cancelled) and resumes it with `error`; nothing when a slot reached
    /// it first.
    private func remove(_ ticket: Int, resumingWith error: any Error) {
        let waiter = state.withLockedValue { state -> Waiter? in
            guard let index = state.waiters.firstIndex(where: { $0.ticket == ticket }) else { return nil }
            return state.waiters.remove(at: index)
        }
        guard let waiter else { return }
        waiter.timer.cancel()
        waiter.continuation.resume(throwing: error)
    }

    private func release() {
        let next = state.withLockedValue { state -> Waiter? in
            if state.waiters.isEmpty {
                state.available += 1
                return nil
            }
            return state.waiters.removeFirst()  // the slot passes straight to the next waiter
        }
        guard let next else { return }
        next.timer.cancel()
        next.continuation.resume()
    }
}
