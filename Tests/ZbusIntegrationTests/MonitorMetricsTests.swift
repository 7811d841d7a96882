import Foundation
import Testing
import Zbus
import ZbusTestSupport

/// `/metrics` as Prometheus reads it, `/health` through a graceful stop, and the 2016 JSON with its new counts.
@Suite("monitor: /metrics, /health, data", .blockingIO(.heavy))
struct MonitorMetricsTests {
    /// Parses a metrics text with the Prometheus Python client's own parser (PyPI `prometheus_client`, which .ci/run
    /// installs) and prints every sample as `name{labels}` → value, and every family's type.
    static let parser = """
    import json, sys
    from prometheus_client.parser import text_string_to_metric_families
    samples, types = {}, {}
    with open(sys.argv[1]) as f:
        for family in text_string_to_metric_families(f.read()):
            types[family.name] = family.type
            for s in family.samples:
                labels = ",".join('%s="%s"' % (k, v) for k, v in sorted(s.labels.items()))
                samples["%s{%s}" % (s.name, labels)] = s.value
    json.dump({"samples": samples, "types": types}, sys.stdout)
    """

    struct Parsed: Decodable {
        let samples: [String: Double]
        let types: [String: String]
    }

    static func parse(_ text: String) throws -> Parsed {
        let directory = ZbusProcess.makeTemporaryDirectory("zbus-metrics")
        defer { try? FileManager.default.removeItem(at: directory) }
        let script = directory.appendingPathComponent("parse.py")
        let input = directory.appendingPathComponent("metrics.txt")
        try parser.write(to: script, atomically: true, encoding: .utf8)
        try text.write(to: input, atomically: true, encoding: .utf8)
        let result = try runCommand("/usr/bin/env", ["python3", script.path, input.path])
        try #require(result.status == 0, "the Prometheus parser refused /metrics (install it: pip install prometheus_client): \(result.stderr)")
        return try JSONDecoder().decode(Parsed.self, from: Data(result.stdout.utf8))
    }

    @Test("/metrics, read by the Prometheus client's parser, counts what was produced and consumed, per MQ")
    func metricsMatchTheTraffic() async throws {
        let node = try MonitoredNode()
        defer { node.cleanUp() }
        let client = try node.process.connect()
        let consumer = try node.process.connect()
        defer { client.close(); consumer.close() }
        try node.create("Orders", on: client)
        try node.create("Invoices", on: client)
        try node.produce(7, into: "Orders", on: client)
        try node.produce(4, into: "Invoices", on: client)
        // Three consumes of Orders: two acknowledged by the next, the third still held.
        for _ in 0..<3 { try node.consume(from: "Orders", on: consumer) }
        try node.consume(from: "Invoices", on: consumer)

        let reply = try node.get("/metrics", on: client)
        #expect(reply.status == 200)
        #expect(reply.contentType?.hasPrefix("text/plain; version=0.0.4") == true)
        let metrics = try Self.parse(reply.bodyString)
        let expected: [String: Double] = [
            #"zbus_mq_produced_messages_total{mq="Orders"}"#: 7,
            #"zbus_mq_produced_messages_total{mq="Invoices"}"#: 4,
            #"zbus_mq_consumed_messages_total{mq="Orders"}"#: 3,
            #"zbus_mq_consumed_messages_total{mq="Invoices"}"#: 1,
            #"zbus_mq_redelivered_messages_total{mq="Orders"}"#: 0,
            #"zbus_mq_depth{mq="Orders"}"#: 4,
            #"zbus_mq_depth{mq="Invoices"}"#: 3,
            #"zbus_mq_in_flight{mq="Orders"}"#: 1,
            #"zbus_mq_in_flight{mq="Invoices"}"#: 1,
            #"zbus_mq_consumers{mq="Orders"}"#: 1,
            #"zbus_mq_consumers{mq="Invoices"}"#: 1,
            "zbus_node_connections{}": 2,
            "zbus_node_mqs{}": 2,
        ]
        for (sample, value) in expected {
            #expect(metrics.samples[sample] == value, "\(sample)")
        }
        #expect(metrics.types["zbus_mq_produced_messages"] == "counter")
        #expect(metrics.types["zbus_mq_depth"] == "gauge")
        #expect(metrics.samples["zbus_node_store_bytes{}"] != nil)
        #expect((metrics.samples["zbus_node_received_bytes_total{}"] ?? 0) > 0)
        #expect((metrics.samples["zbus_node_sent_bytes_total{}"] ?? 0) > 0)
        #expect(metrics.types["zbus_store_fsync_duration_seconds"] == "histogram")

        // The consumer's connection closes: what it held is redelivered, and the next scrape counts it.
        consumer.close()
        let redelivered = try #require(try await eventuallyParsed(node, on: client) { $0.samples[#"zbus_mq_consumers{mq="Orders"}"#] == 0 })
        #expect(redelivered.samples[#"zbus_mq_redelivered_messages_total{mq="Orders"}"#] == 1)
        #expect(redelivered.samples[#"zbus_mq_redelivered_messages_total{mq="Invoices"}"#] == 1)
        #expect(redelivered.samples[#"zbus_mq_depth{mq="Orders"}"#] == 5)
        #expect(redelivered.samples[#"zbus_mq_in_flight{mq="Orders"}"#] == 0)
    }

    /// Scrapes until `condition` holds (the node handles a closed connection on its own loop, after the close).
    private func eventuallyParsed(_ node: MonitoredNode, on client: WireClient, _ condition: (Parsed) -> Bool) async throws -> Parsed? {
        var last: Parsed?
        _ = try await eventually(within: 20) {
            let parsed = try Self.parse(try node.get("/metrics", on: client).bodyString)
            last = parsed
            return condition(parsed)
        }
        return last.flatMap { condition($0) ? $0 : nil }
    }

    @Test("/metrics counts RPC calls by service and outcome, with their latency")
    func rpcCallsAreCounted() async throws {
        let node = try MonitoredNode(moreModules: """
          - module: rpc
            services:
              - { service: calc, mq: Calc, workers: 1 }
        """)
        defer { node.cleanUp() }
        let client = try node.process.connect()
        defer { client.close() }
        // The worker may not consume yet (404 Service Down, which never reaches the service): ask until it answers.
        var answer: Message?
        #expect(try await eventually(within: 30) {
            answer = try node.get("/Calc/calc/plus?params=1,2", on: client)
            return answer?.status == 200
        }, "\(answer?.bodyString ?? "no answer")")
        let failed = try node.get("/Calc/calc/divide?params=1,0", on: client)
        #expect(failed.status == 500)
        let metrics = try Self.parse(try node.get("/metrics", on: client).bodyString)
        #expect(metrics.samples[#"zbus_rpc_calls_total{outcome="ok",service="calc"}"#] == 1)
        #expect(metrics.samples[#"zbus_rpc_calls_total{outcome="error",service="calc"}"#] == 1)
        #expect(metrics.samples[#"zbus_rpc_call_duration_seconds_count{service="calc"}"#] == 2)
        #expect(metrics.types["zbus_rpc_call_duration_seconds"] == "histogram")
    }

    @Test("after a restart short of descriptors, an MQ not opened yet has no depth series (its backlog is unknown), then its real depth")
    func unopenedMQHasNoDepth() throws {
        // Under 256 descriptors a restart opens only half of what fits; the others open on first use.
        let directory = ZbusProcess.makeTemporaryDirectory("zbus-monitor")
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = directory.appendingPathComponent("node.yaml")
        try "modules:\n  - module: mq\n  - module: monitor\n".write(to: config, atomically: true, encoding: .utf8)
        let first = MonitoredNode(process: try ZbusProcess(arguments: ["--config", config.path], directory: directory,
                                                            timeout: 60, openFileLimit: 256))
        do {
            let client = try first.process.connect()
            defer { client.close() }
            for index in 0..<300 {
                let name = String(format: "q%04d", index)
                client.request([("cmd", "create_mq"), ("mq_name", name), ("mq_mode", "1")])
                guard try client.receive().status == 200 else { break }
                try first.produce(1, into: name, on: client)
            }
        }
        #expect(first.process.stop() == 0, "\(first.process.stderr)")

        let restarted = MonitoredNode(process: try ZbusProcess(arguments: ["--config", config.path], directory: directory,
                                                                timeout: 60, openFileLimit: 256))
        defer { restarted.process.stop() }
        let client = try restarted.process.connect()
        defer { client.close() }
        let overview = try JSONSerialization.jsonObject(with: Data(try restarted.get("/monitor/api/overview", on: client).bodyString.utf8)) as? [String: Any]
        let unopened = ((overview?["mqs"] as? [[String: Any]]) ?? []).filter { $0["opened"] as? Bool == false }
        let name = try #require(unopened.first?["name"] as? String, "some MQ is left unopened by the restart")
        let before = try Self.parse(try restarted.get("/metrics", on: client).bodyString)
        #expect(before.samples["zbus_mq_produced_messages_total{mq=\"\(name)\"}"] == 0, "the MQ is listed")
        #expect(before.samples["zbus_mq_depth{mq=\"\(name)\"}"] == nil, "no depth of 0 for a waiting message")

        client.request([("cmd", "query_mq"), ("mq", name)])  // opens it
        #expect(try client.receive(timeout: 10).status == 200)
        let after = try Self.parse(try restarted.get("/metrics", on: client).bodyString)
        #expect(after.samples["zbus_mq_depth{mq=\"\(name)\"}"] == 1)
    }

    @Test("scrapes on several connections through a graceful stop: each is answered or its connection closes, and the node exits 0")
    func scrapesThroughAStop() throws {
        let node = try MonitoredNode()
        defer { node.cleanUp() }
        let clients = try (0..<4).map { _ in try node.process.connect() }
        defer { clients.forEach { $0.close() } }
        try node.create("Scraped", on: clients[0])
        // Each scraper is answered once before the stop, so that all are connected (on the node's several loops).
        for client in clients { #expect(try node.get("/metrics", on: client).status == 200) }
        let scrapers = DispatchGroup()
        for client in clients {
            DispatchQueue.global().async(group: scrapers) {
                // Until the node closes the connection (the receive then throws).
                while true {
                    client.request([], uri: "/metrics")
                    guard (try? client.receive(timeout: 10)) != nil else { return }
                }
            }
        }
        kill(node.process.process.processIdentifier, SIGTERM)
        #expect(node.process.stop(timeout: 30) == 0, "\(node.process.stderr)")
        #expect(scrapers.wait(timeout: .now() + 30) == .success, "every scraper saw its connection close")
        #expect(!node.process.stderr.contains("leaking promise"), "\(node.process.stderr)")
    }

    @Test("/health answers 200 while serving and 503 once a graceful stop began, until the node stops")
    func healthFlipsDuringAGracefulStop() throws {
        // The drain keeps the stopping node up long enough to be asked; the stop is bounded by it.
        let node = try MonitoredNode(monitorKeys: "drain: 3s")
        defer { node.cleanUp() }
        let client = try node.process.connect()
        defer { client.close() }
        let serving = try node.get("/health", on: client)
        #expect(serving.status == 200)
        #expect(serving.bodyString == "serving\n")

        kill(node.process.process.processIdentifier, SIGTERM)
        #expect(node.process.waitForLog("draining: /health answers 503"), "\(node.process.stderr)")
        // The connection opened before the stop is still served.
        let stopping = try node.get("/health", on: client)
        #expect(stopping.status == 503)
        #expect(stopping.bodyString == "stopping\n")
        #expect(node.process.stop(timeout: 30) == 0, "\(node.process.stderr)")
    }

    @Test("data and query_mq keep zbus 6's fields and add the counts and measured rates")
    func legacyJsonCarriesCounts() throws {
        let node = try MonitoredNode()
        defer { node.cleanUp() }
        let client = try node.process.connect()
        defer { client.close() }
        try node.create("Orders", on: client)
        try node.produce(3, into: "Orders", on: client)
        try node.consume(from: "Orders", on: client)
        let data = try JSONParser.parse(try node.get("/?cmd=data", on: client).bodyString)
        let orders = try #require(data["mqTable"]?["Orders"])
        for key in ["name", "mode", "creator", "consumerCount", "consumerInfoList", "unconsumedMsgCount", "lastUpdateTime"] {
            #expect(orders[key] != nil, "\(key) missing")
        }
        #expect(orders["producedCount"] == .int(3))
        #expect(orders["consumedCount"] == .int(1))
        #expect(orders["unconsumedMsgCount"] == .int(2))
        for key in ["produceRate", "consumeRate"] {
            guard case .double(let rate)? = orders[key] else { Issue.record("\(key): \(String(describing: orders[key]))"); continue }
            #expect(rate >= 0)
        }
        let query = try JSONParser.parse(try node.get("/Orders?cmd=query_mq", on: client).bodyString)
        #expect(query["producedCount"] == .int(3))
    }
}
