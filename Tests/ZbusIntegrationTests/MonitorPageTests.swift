import Foundation
import Testing
import ZbusTestSupport

/// The monitor page in a real browser (headless Chromium): it renders what the node holds, and refreshes itself.
@Suite("monitor page in headless Chromium", .blockingIO(.heavy))
struct MonitorPageTests {
    /// Where the README shows the page.
    static let screenshot = ZbusProcess.packageRoot.appendingPathComponent("docs/images/monitor.png")

    /// A script that waits for the page's own refreshes (its `zbus:refreshed` event) until `after` more have
    /// happened than `since`, then returns the MQ table as rendered (cells read from the DOM), as JSON text.
    static func tableAfterRefreshes(since: Int, after: Int = 2) -> String {
        """
        new Promise((resolve, reject) => {
          const target = \(since + after);
          const timer = setTimeout(() => reject(new Error("the page did not refresh " + \(after) + " times within 20 s")), 20000);
          const rows = () => Array.from(document.querySelectorAll("#mq-rows tr.mq")).map((tr) => ({
            name: tr.dataset.mq,
            depth: Number(tr.querySelector(".depth").textContent),
            consumers: Number(tr.querySelector(".consumers").textContent),
            inFlight: Number(tr.querySelector(".inflight").textContent),
          }));
          const check = () => {
            if (Number(document.body.dataset.refreshes || 0) < target) return false;
            clearTimeout(timer);
            resolve(JSON.stringify({ refreshes: Number(document.body.dataset.refreshes), marker: window.zbusTestMarker || null,
                                     status: document.getElementById("status").textContent, rows: rows() }));
            return true;
          };
          if (!check()) document.addEventListener("zbus:refreshed", function listener() {
            if (check()) document.removeEventListener("zbus:refreshed", listener);
          });
        })
        """
    }

    struct Row: Decodable, Equatable {
        let name: String
        let depth: Int
        let consumers: Int
        let inFlight: Int
    }

    struct Rendered: Decodable {
        let refreshes: Int
        let marker: Int?
        let status: String
        let rows: [Row]
    }

    static func rendered(_ browser: HeadlessBrowser, since: Int, after: Int = 2) throws -> Rendered {
        let text = try #require(try browser.evaluate(tableAfterRefreshes(since: since, after: after), timeout: 30) as? String)
        return try JSONDecoder().decode(Rendered.self, from: Data(text.utf8))
    }

    static func refreshCount(_ browser: HeadlessBrowser) throws -> Int {
        Int(try browser.evaluate("Number(document.body.dataset.refreshes || 0)") as? Double ?? 0)
    }

    @Test("shows each MQ's depth, consumers and in-flight count, follows new produces without a reload, and is captured for the README")
    func pageFollowsTheNode() throws {
        let node = try MonitoredNode()
        defer { node.cleanUp() }
        let producer = try node.process.connect()
        let consumer = try node.process.connect()
        defer { producer.close(); consumer.close() }
        try node.create("Orders", on: producer)
        try node.create("Invoices", on: producer)
        try node.produce(3, into: "Orders", on: producer)
        try node.produce(5, into: "Invoices", on: producer)
        // One consumer holds one message of Invoices: 4 wait, 1 in flight.
        try node.consume(from: "Invoices", on: consumer)

        let browser = try HeadlessBrowser()
        defer { browser.close() }
        try browser.open("http://127.0.0.1:\(node.process.port)/")
        _ = try browser.evaluate("window.zbusTestMarker = 42")

        // The second refresh after this point fetched after everything above.
        let first = try Self.rendered(browser, since: try Self.refreshCount(browser))
        #expect(first.rows == [
            Row(name: "Invoices", depth: 4, consumers: 1, inFlight: 1),
            Row(name: "Orders", depth: 3, consumers: 0, inFlight: 0),
        ])
        #expect(first.status == "live")

        try node.produce(4, into: "Orders", on: producer)
        try node.consume(from: "Invoices", on: consumer)  // acknowledges the first, takes the next
        let second = try Self.rendered(browser, since: try Self.refreshCount(browser))
        #expect(second.rows == [
            Row(name: "Invoices", depth: 3, consumers: 1, inFlight: 1),
            Row(name: "Orders", depth: 7, consumers: 0, inFlight: 0),
        ])
        // The same page (its marker survives): it refreshed itself, nothing reloaded it.
        #expect(second.marker == 42)
        #expect(second.refreshes > first.refreshes)

        // The detail view of one MQ, for the screenshot: its consumer's address and the rate chart.
        _ = try browser.evaluate(#"document.querySelector('tr[data-mq="Invoices"]').click()"#)
        // A few seconds of traffic, one step per refresh, so that the charts have something to draw.
        for step in 1...4 {
            try node.produce(3 * step, into: "Invoices", on: producer)
            try node.produce(step, into: "Orders", on: producer)
            for _ in 0..<step { try node.consume(from: "Invoices", on: consumer) }
            _ = try Self.rendered(browser, since: try Self.refreshCount(browser), after: 1)
        }
        _ = try Self.rendered(browser, since: try Self.refreshCount(browser))
        let consumerShown = try browser.evaluate("document.getElementById('detail-consumers').textContent") as? String
        #expect(consumerShown?.contains("127.0.0.1:") == true, "detail view: \(consumerShown ?? "nothing")")
        let png = try browser.screenshot()
        #expect(png.starts(with: [0x89, 0x50, 0x4E, 0x47]))
        try FileManager.default.createDirectory(at: Self.screenshot.deletingLastPathComponent(), withIntermediateDirectories: true)
        try png.write(to: Self.screenshot)
    }
}
