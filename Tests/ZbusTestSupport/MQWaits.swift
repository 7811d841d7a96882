import Foundation
import ZbusKernel

#if canImport(Glibc)
import Glibc
#endif

extension ZbusProcess {
    /// Asks `query_mq` for `mq`, on a connection of its own, until `condition` holds for the answer (zbus 6's MqInfo
    /// JSON); returns that answer, or throws after `seconds` with the last one.
    ///
    /// This polls because the node sends no event for what it waits for: a parked consume, a subscription or a
    /// closed consumer's release changes only the node's state, which `query_mq` reports.
    @discardableResult
    public func waitForMQ(_ mq: String, _ what: String, within seconds: Double = 20,
                          until condition: ([String: Any]) -> Bool) throws -> [String: Any] {
        let client = try connect()
        defer { client.close() }
        let deadline = monotonicSeconds() + seconds
        var last: [String: Any] = [:]
        while true {
            client.request([("cmd", "query_mq"), ("mq", mq), ("id", "wait")])
            let reply = try client.receive(timeout: max(1, deadline - monotonicSeconds()))
            last = (try? JSONSerialization.jsonObject(with: Data(reply.bodyString.utf8)) as? [String: Any]) ?? [:]
            if condition(last) { return last }
            guard monotonicSeconds() < deadline else {
                throw WireClientError.timedOut("MQ \(mq): \(what) (last query_mq: \(reply.status ?? 0) \(reply.bodyString))")
            }
            // A pause between queries keeps the poll from taking a core of a two-core machine.
            usleep(5_000)
        }
    }

    /// Waits until `mq` has `count` consumers (connections that consumed and are still open: `consumerCount`).
    @discardableResult
    public func waitForConsumers(_ mq: String, count: Int, within seconds: Double = 20) throws -> [String: Any] {
        try waitForMQ(mq, "\(count) consumers", within: seconds) { $0["consumerCount"] as? Int == count }
    }

    /// Waits until `count` consumes are parked on `mq` (or, on a pub/sub MQ, `count` subscribers are registered): the
    /// entries of `consumerInfoList`.
    @discardableResult
    public func waitForParkedConsumes(_ mq: String, count: Int, within seconds: Double = 20) throws -> [String: Any] {
        try waitForMQ(mq, "\(count) parked consumes", within: seconds) { ($0["consumerInfoList"] as? [Any])?.count == count }
    }
}
