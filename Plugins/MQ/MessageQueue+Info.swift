import ZbusKernel

extension MessageQueue {
    /// The MqInfo JSON of zbus 6 (`topics` as an array). The broker view (`data`) leaves `consumerInfoList` empty.
    func info(includeConsumers: Bool) -> JSONValue {
        lock.withLock {
            var list: [JSONValue] = []
            if includeConsumers {
                let shown: [(remoteAddress: String, topics: [String])] = isPubSub
                    ? pubSub.subscribers.map { ($0.peer.remoteAddress, $0.topics.sorted()) }
                    : pointToPoint.parkedPeers.map { ($0.remoteAddress, []) }
                list = shown.map { info in
                    .object(["remoteAddr": .string(info.remoteAddress), "status": "CONNECTED", "topics": .array(info.topics.map { .string($0) })])
                }
            }
            var object: [String: JSONValue] = [
                "name": .string(definition.name),
                "mode": .int(Int64(definition.mode)),
                "creator": .string(definition.creator),
                "consumerCount": .int(Int64(consumerCountLocked)),
                "consumerInfoList": .array(list),
                "unconsumedMsgCount": .int(isPubSub ? Int64(pubSub.bufferedCount) : waitingCountLocked),
                "inFlightMsgCount": .int(inFlightCountLocked),
                "lastUpdateTime": .int(lastUpdate),
                // Measured once a second by the statistics sampler (zbus 6's page showed a TPS of 0.0).
                "produceRate": .double(sampling.produceRate),
                "consumeRate": .double(sampling.consumeRate),
                "producedCount": .int(Int64(truncatingIfNeeded: producedCount)),
                "consumedCount": .int(Int64(truncatingIfNeeded: isPubSub ? pubSub.deliveredCount : pointToPoint.deliveredCount)),
            ]
            if definition.maxLength > 0 { object["maxLength"] = .int(definition.maxLength) }
            if let master = definition.masterMq { object["masterMq"] = .string(master) }
            return .object(object)
        }
    }

    /// The MQ as trackers see it (`entry_update`): mode, waiting messages and consumers.
    func trackedEntry() -> TrackedEntry {
        lock.withLock {
            TrackedEntry(name: definition.name, mode: definition.mode, lastUpdateTime: lastUpdate,
                         unconsumedCount: isPubSub ? Int64(pubSub.bufferedCount) : waitingCountLocked,
                         consumerCount: consumerCountLocked)
        }
    }
}
