import Foundation
import Testing
import ZbusKernel
import ZbusTestSupport

/// Every program under Examples/ runs as a user would run it, against a fresh node (a child `zbus` on an OS-chosen
/// port with a scratch store), and prints what its header comment promises.
@Suite("Examples", .blockingIO(.heavy))
struct ExamplesTests {
    /// Generous: a debug build on a loaded two-core machine.
    static let timeout = 120.0

    private func run(_ program: String, _ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        try runCommand(ZbusProcess.executablePath(program), arguments, timeout: Self.timeout)
    }

    private func lines(_ text: String) -> [String] {
        text.split(separator: "\n").map(String.init)
    }

    @Test("Producer stores its messages in a new MQ; Consumer prints them in order and ends once the MQ is idle")
    func producerThenConsumer() throws {
        let node = try startMQNode()
        defer { node.cleanUp() }
        let address = "127.0.0.1:\(node.port)"

        let produced = try run("zbus-example-producer", [address, "Examples", "3"])
        #expect(produced.status == 0, "producer: \(produced.stderr)")
        let stored = lines(produced.stdout)
        #expect(stored.count == 3, "\(produced.stdout)")
        for (index, line) in stored.enumerated() {
            // The acknowledgement's body is the time the node stored the message (epoch milliseconds).
            #expect(line.wholeMatch(of: /stored message \d+ at \d{13}/) != nil && line.hasPrefix("stored message \(index + 1) "), "\(line)")
        }

        let consumed = try run("zbus-example-consumer", [address, "Examples", "1"])
        #expect(consumed.status == 0, "consumer: \(consumed.stderr)")
        let printed = lines(consumed.stdout)
        #expect(printed.count == 3, "\(consumed.stdout)")
        for (index, line) in printed.enumerated() {
            #expect(line.hasSuffix(": hello world \(index + 1)"), "\(line)")
        }
        let info = try node.waitForMQ("Examples", "the consumer's acknowledgement") { $0["inFlightMsgCount"] as? Int == 0 }
        #expect(info["unconsumedMsgCount"] as? Int == 0, "\(info)")
    }

    @Test("Consumer started first creates the MQ and waits; what Producer then sends reaches it")
    func consumerThenProducer() throws {
        let node = try startMQNode()
        defer { node.cleanUp() }
        let address = "127.0.0.1:\(node.port)"

        let consumer = try CommandProcess(ZbusProcess.executablePath("zbus-example-consumer"), [address, "Later", "2"])
        try node.waitForParkedConsumes("Later", count: 1, within: Self.timeout)
        let produced = try run("zbus-example-producer", [address, "Later", "2"])
        #expect(produced.status == 0, "producer: \(produced.stderr)")
        let consumed = consumer.finish(timeout: Self.timeout)
        #expect(consumed.status == 0, "consumer: \(consumed.stderr)")
        #expect(lines(consumed.stdout).map { $0.split(separator: ": ", maxSplits: 1).last.map(String.init) ?? $0 }
                == ["hello world 1", "hello world 2"], "\(consumed.stdout)")
    }

    @Test("EmbeddedNode runs a node inside the program, on a port of its own, and consumes in-process what it produced")
    func embeddedNode() throws {
        let directory = ZbusProcess.makeTemporaryDirectory("zbus-example-embedded")
        defer { try? FileManager.default.removeItem(at: directory) }
        let result = try run("zbus-example-embedded", [directory.appendingPathComponent("store").path])
        #expect(result.status == 0, "embedded: \(result.stderr)")
        let printed = lines(result.stdout)
        #expect(printed.count == 2, "\(result.stdout)")
        #expect(printed.first?.wholeMatch(of: /node listening on 127\.0\.0\.1:\d+/) != nil, "\(result.stdout)")
        #expect(printed.last == "consumed in-process: hello from an embedded node", "\(result.stdout)")
    }
}
