import Foundation
import Testing
import Zbus
import ZbusTestSupport

/// On a tracker, the monitor page shows the cluster: the servers that report to it and their entries.
@Suite("monitor page on a tracker", .blockingIO(.heavy))
struct MonitorClusterTests {
    @Test("the page of a tracker lists each reporting server's MQs with their depth and consumers")
    func trackerPageShowsTheCluster() async throws {
        let directory = ZbusProcess.makeTemporaryDirectory("zbus-monitor-cluster")
        defer { try? FileManager.default.removeItem(at: directory) }
        let trackerFile = directory.appendingPathComponent("tracker.yaml")
        try """
        node:
          name: tracker
        modules:
          - module: tracker
          - module: monitor
        """.write(to: trackerFile, atomically: true, encoding: .utf8)
        let tracker = try ZbusProcess(arguments: ["--config", trackerFile.path])
        defer { tracker.cleanUp() }
        let brokerFile = directory.appendingPathComponent("broker.yaml")
        try """
        node:
          name: broker
        trackers: [127.0.0.1:\(tracker.port)]
        modules:
          - module: mq
        """.write(to: brokerFile, atomically: true, encoding: .utf8)
        let broker = try ZbusProcess(arguments: ["--config", brokerFile.path])
        defer { broker.cleanUp() }
        let node = MonitoredNode(process: broker)
        let client = try broker.connect()
        defer { client.close() }
        try node.create("Orders", on: client)
        try node.produce(2, into: "Orders", on: client)

        // The broker reports every 2 s: wait until the tracker's monitor has the entry with both messages.
        let trackerClient = try tracker.connect()
        defer { trackerClient.close() }
        let brokerAddress = "127.0.0.1:\(broker.port)"
        var rows: [JSONValue] = []
        let reported = try await eventually(within: 30) {
            let overview = try JSONParser.parse(try node.get("/monitor/api/overview", on: trackerClient).bodyString)
            guard case .array(let panels)? = overview["panels"], let cluster = panels.first(where: { $0["name"] == "cluster" }),
                case .array(let found)? = cluster["rows"] else { return false }
            rows = found
            return found.contains { row in
                    guard case .array(let cells) = row, cells.count == 7 else { return false }
                    return Array(cells.prefix(6)) == [.string(brokerAddress), "connected", "Orders", "MQ", "2", "0"]
                }
        }
        #expect(reported, "cluster rows: \(rows)")

        // The same rows on the rendered page.
        let browser = try HeadlessBrowser()
        defer { browser.close() }
        try browser.open("http://127.0.0.1:\(tracker.port)/")
        let since = try MonitorPageTests.refreshCount(browser)
        _ = try MonitorPageTests.rendered(browser, since: since)
        let text = try browser.evaluate(#"document.querySelector('section[data-panel="cluster"]').textContent"#) as? String ?? ""
        #expect(text.contains("Cluster"))
        #expect(text.contains(brokerAddress) && text.contains("Orders"), "\(text)")
    }
}
