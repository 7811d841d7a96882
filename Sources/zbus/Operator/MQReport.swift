import Foundation
import Zbus

/// One MQ as the node's `data` and `query_mq` JSON describe it (zbus 6 MqInfo, plus this node's additions).
///
/// Every count is optional: an MQ the node has not opened since it started is listed by `data` with its definition
/// only (`opened: false`), and a zbus 6 node sends no `inFlightMsgCount`.
struct NodeMQ: Decodable {
    /// One consumer of the MQ.
    struct Consumer: Decodable {
        var remoteAddr: String
        var status: String?
        var topics: [String]?

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            remoteAddr = try container.decode(String.self, forKey: .remoteAddr)
            status = try container.decodeIfPresent(String.self, forKey: .status)
            // A zbus 6 node without fastjson writes a topic set as `{"empty":true}`: no list to show.
            topics = try? container.decodeIfPresent([String].self, forKey: .topics)
        }

        private enum CodingKeys: String, CodingKey { case remoteAddr, status, topics }
    }

    var name: String
    var mode: Int
    var creator: String?
    var consumerCount: Int?
    var unconsumedMsgCount: Int64?
    var inFlightMsgCount: Int64?
    var lastUpdateTime: Int64?
    var consumerInfoList: [Consumer]?
    var maxLength: Int64?
    var masterMq: String?
    var opened: Bool?
    /// Messages per second over the last second, and the totals since the node started (nodes with the rate
    /// sampler; `nil` from a zbus 6.3 node).
    var produceRate: Double?
    var consumeRate: Double?
    var producedCount: Int64?
    var consumedCount: Int64?
}

/// The node's `data` answer (zbus 6 BrokerInfo).
struct NodeData: Decodable {
    var mqTable: [String: NodeMQ]
    var broker: String?
    var lastUpdatedTime: Int64?
}

/// Decodes a JSON answer, or says why it is not what was expected.
enum NodeJSON {
    static func decode<T: Decodable>(_ type: T.Type, from reply: Message, server: String, request: String) throws(OperatorError) -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(reply.bodyString.utf8))
        } catch {
            let body = reply.bodyString
            let shown = body.count > 200 ? String(body.prefix(200)) + "..." : body
            throw .unexpectedAnswer(server: server, request: request, reason: "the body is not the expected JSON (\(error)): \(shown)")
        }
    }
}

/// The mode bits of an MQ as names: `mq`, `pubsub`, `memory`, `rpc`, joined by `+`.
enum ModeNames {
    static let all: [(name: String, bit: Int)] = [("mq", 1), ("pubsub", 2), ("memory", 4), ("rpc", 8)]

    /// `5` → `mq+memory`; unknown bits are kept as a number.
    static func describe(_ bits: Int) -> String {
        var names = all.filter { bits & $0.bit != 0 }.map(\.name)
        let unknown = bits & ~all.reduce(0) { $0 | $1.bit }
        if unknown != 0 { names.append(String(unknown)) }
        return names.isEmpty ? "0" : names.joined(separator: "+")
    }

    /// Parses `pubsub`, `mq+memory`, `pubsub,memory` or a number such as `5`.
    static func parse(_ text: String) -> Int? {
        if let number = Int(text), number > 0 { return number }
        var bits = 0
        for part in text.lowercased().split(whereSeparator: { $0 == "+" || $0 == "," }) {
            guard let mode = all.first(where: { $0.name == part || ($0.name == "pubsub" && part == "pub-sub") }) else { return nil }
            bits |= mode.bit
        }
        return bits == 0 ? nil : bits
    }
}

/// One MQ as the operator commands print it; the JSON field names are documented in docs/cli.md and stay stable.
struct MQReport: Encodable {
    /// One consumer.
    struct ConsumerReport: Encodable {
        var address: String
        var status: String?
        var topics: [String]

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(address, forKey: .address)
            try container.encode(status, forKey: .status)
            try container.encode(topics, forKey: .topics)
        }

        private enum CodingKeys: String, CodingKey { case address, status, topics }
    }

    var name: String
    var modeBits: Int
    var creator: String?
    var depth: Int64?
    var consumers: Int
    var inFlight: Int64?
    var lastUpdateMillis: Int64?
    var maxLength: Int64?
    var masterMq: String?
    var opened: Bool
    var produceRate: Double?
    var consumeRate: Double?
    var produced: Int64?
    var consumed: Int64?
    /// Only `mq info` lists the consumers (`data` leaves them out).
    var consumerList: [ConsumerReport]?

    init(_ mq: NodeMQ) {
        name = mq.name
        modeBits = mq.mode
        creator = mq.creator
        depth = mq.unconsumedMsgCount
        consumers = mq.consumerCount ?? 0
        inFlight = mq.inFlightMsgCount
        lastUpdateMillis = mq.lastUpdateTime
        maxLength = (mq.maxLength ?? 0) > 0 ? mq.maxLength : nil
        masterMq = mq.masterMq
        opened = mq.opened ?? true
        produceRate = mq.produceRate
        consumeRate = mq.consumeRate
        produced = mq.producedCount
        consumed = mq.consumedCount
        consumerList = mq.consumerInfoList.map { list in
            list.map { ConsumerReport(address: $0.remoteAddr, status: $0.status, topics: $0.topics ?? []) }
        }
    }

    var mode: String { ModeNames.describe(modeBits) }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(name, forKey: .name)
        try container.encode(mode, forKey: .mode)
        try container.encode(modeBits, forKey: .modeBits)
        try container.encode(creator, forKey: .creator)
        try container.encode(depth, forKey: .depth)
        try container.encode(consumers, forKey: .consumers)
        try container.encode(inFlight, forKey: .inFlight)
        try container.encode(lastUpdateMillis, forKey: .lastUpdateMillis)
        try container.encode(maxLength, forKey: .maxLength)
        try container.encode(masterMq, forKey: .masterMq)
        try container.encode(opened, forKey: .opened)
        try container.encode(produceRate, forKey: .produceRate)
        try container.encode(consumeRate, forKey: .consumeRate)
        try container.encode(produced, forKey: .produced)
        try container.encode(consumed, forKey: .consumed)
        if let consumerList { try container.encode(consumerList, forKey: .consumerList) }
    }

    private enum CodingKeys: String, CodingKey {
        case name, mode, creator, depth, consumers, opened, produced, consumed
        case produceRate = "produce_rate"
        case consumeRate = "consume_rate"
        case modeBits = "mode_bits"
        case inFlight = "in_flight"
        case lastUpdateMillis = "last_update_ms"
        case maxLength = "max_length"
        case masterMq = "master_mq"
        case consumerList = "consumer_list"
    }
}

/// Ways of showing numbers and times to people.
enum Shown {
    /// A count, or `-` when the node does not know it.
    static func count<T: BinaryInteger>(_ value: T?) -> String {
        value.map { String($0) } ?? "-"
    }

    /// A rate in messages per second with one decimal, or `-` when the node does not measure it.
    static func rate(_ value: Double?) -> String {
        guard let value, value.isFinite else { return "-" }
        return String((value * 10).rounded() / 10)
    }

    /// How long ago an epoch-milliseconds time was: `now`, `42s ago`, `5m ago`, `3h ago`, `2d ago`.
    static func age(_ millis: Int64?, now: Date = Date()) -> String {
        guard let millis, millis > 0 else { return "-" }
        let seconds = Int64(now.timeIntervalSince1970 * 1000 - Double(millis)) / 1000
        switch seconds {
        case ..<1: return "now"
        case ..<120: return "\(seconds)s ago"
        case ..<7200: return "\(seconds / 60)m ago"
        case ..<172_800: return "\(seconds / 3600)h ago"
        default: return "\(seconds / 86400)d ago"
        }
    }
}

/// What the commands print on stdout.
enum Output {
    /// `value` as JSON: indented, keys sorted, so that a diff of two runs shows only what changed.
    static func json<T: Encodable>(_ value: T) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        write(value, encoder: encoder)
    }

    /// `value` as one line of JSON (a stream of records, one per line).
    static func jsonLine<T: Encodable>(_ value: T) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        write(value, encoder: encoder)
    }

    private static func write<T: Encodable>(_ value: T, encoder: JSONEncoder) {
        // The values are plain structs of strings and numbers: encoding cannot fail.
        guard var data = try? encoder.encode(value) else { return }
        data.append(UInt8(ascii: "\n"))
        FileHandle.standardOutput.write(data)
    }

    /// Text as it is (a table ends in its own newline).
    static func text(_ text: String) {
        // Unbuffered: a `consume` that waits between messages shows each one as it comes.
        FileHandle.standardOutput.write(Data(text.utf8))
    }
}
