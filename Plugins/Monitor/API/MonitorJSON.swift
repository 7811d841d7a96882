import ZbusKernel

/// The JSON the monitor page reads (`/monitor/api/overview`, `/monitor/api/mq?name=`), also meant for scripts.
enum MonitorJSON {
    /// The node, every MQ with its rates (and, for the first MQs, the last minute of rates), and the panels.
    static func overview(_ state: MonitorState, access: MonitorEndpoints.Access) -> JSONValue {
        let node = state.node
        let statistics = access.visible(node?.queues)
        var queues: [JSONValue] = []
        queues.reserveCapacity(statistics.count)
        for (index, queue) in statistics.enumerated() {
            var object = json(queue)
            if index < MonitorEndpoints.sparklineQueues {
                let history = state.history(of: queue.name, limit: MonitorEndpoints.sparklineSamples)
                object["history"] = rates(history)
            }
            queues.append(.object(object))
        }
        let panels: [JSONValue] = (access.panels ? state.panels : []).map { panel in
            .object([
                "name": .string(panel.name), "title": .string(panel.title),
                "columns": .array(panel.table.columns.map { .string($0) }),
                "rows": .array(panel.table.rows.map { .array($0.map { .string($0) }) }),
                "emptyText": .string(panel.table.emptyText),
            ])
        }
        return .object([
            "node": .object([
                "name": .string(node?.name ?? ""),
                "version": .string(ZbusVersion.current),
                "address": .string(node?.address ?? ""),
                "startedAt": .int(state.startedAtWallClock),
                "uptimeSeconds": .int(Int64(state.uptimeSeconds)),
                "connections": .int(Int64(node?.sessions.count ?? 0)),
                "storeBytes": .int(state.storeBytes),
                "modules": .array((node?.modules ?? []).map { .string($0) }),
                "stopping": .bool(state.isStopping),
            ]),
            "time": .int(WallClock.milliseconds()),
            "historySeconds": .int(Int64(state.historySeconds)),
            "mqs": .array(queues),
            "panels": .array(panels),
        ])
    }

    /// One MQ in detail with its whole rate history, or `nil` when there is no such MQ.
    static func queue(named name: String, state: MonitorState, access: MonitorEndpoints.Access) -> JSONValue? {
        guard let source = state.node?.queues, access.everyQueue || source.mayRead(queue: name, token: access.token),
            let detail = source.queueDetail(named: name)
        else { return nil }
        var object = json(detail.statistics)
        object["consumerList"] = .array(detail.consumers.map { consumer in
            .object([
                "remoteAddr": .string(consumer.remoteAddress),
                "topics": .array(consumer.topics.map { .string($0) }),
                "inFlight": .int(Int64(consumer.inFlight)),
                "waiting": .bool(consumer.isWaiting),
            ])
        })
        object["oldestWaitingAgeMs"] = detail.oldestWaitingAge.map { .int($0) } ?? .null
        object["topics"] = .array(detail.topics.map { .string($0) })
        object["creator"] = .string(detail.creator)
        object["masterMq"] = detail.masterMq.map { .string($0) } ?? .null
        object["history"] = rates(state.history(of: name, limit: state.historySeconds))
        return .object(object)
    }

    private static func json(_ queue: QueueStatistics) -> [String: JSONValue] {
        [
            "name": .string(queue.name),
            "mode": .int(Int64(queue.mode)),
            "modeText": .string(queue.modeDescription),
            "depth": .int(queue.depth),
            "consumers": .int(Int64(queue.consumers)),
            "inFlight": .int(queue.inFlight),
            "produced": .int(Int64(truncatingIfNeeded: queue.produced)),
            "consumed": .int(Int64(truncatingIfNeeded: queue.consumed)),
            "redelivered": .int(Int64(truncatingIfNeeded: queue.redelivered)),
            "produceRate": .double(rounded(queue.produceRate)),
            "consumeRate": .double(rounded(queue.consumeRate)),
            "lastActivity": .int(queue.lastActivity),
            "opened": .bool(queue.isOpen),
        ]
    }

    private static func rates(_ history: (produce: [Double], consume: [Double])) -> JSONValue {
        .object([
            "produce": .array(history.produce.map { .double(rounded($0)) }),
            "consume": .array(history.consume.map { .double(rounded($0)) }),
        ])
    }

    /// Rates to a tenth of a message per second: more digits say nothing and weigh on every refresh.
    private static func rounded(_ value: Double) -> Double { (value * 10).rounded() / 10 }
}
