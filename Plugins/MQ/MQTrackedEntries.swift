import ZbusKernel

/// The node's MQs as the entries its tracker reporting announces (`trackers:` in the node file): created, removed and
/// consumer changes are told to the reporting as they happen, never per message.
struct MQTrackedEntries: TrackedEntrySource {
    let broker: MQBroker

    func trackedEntries() -> [TrackedEntry] { broker.trackedEntries() }

    func trackedEntry(named name: String) -> TrackedEntry? { broker.trackedEntry(named: name) }

    func observeTrackedEntries(_ observer: @escaping @Sendable (TrackedEntryChange) -> Void) {
        broker.entryObservers.add(observer)
    }
}
