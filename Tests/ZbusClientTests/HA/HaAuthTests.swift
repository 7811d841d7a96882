import Foundation
import Testing
import Zbus
import ZbusTestSupport

/// The HA client against a tracker node with an `auth` section: `sub_all` needs the `tracker` permission, which the
/// client presents as `HaConfiguration.trackerToken`.
@Suite("HA client under auth", .blockingIO(.heavy))
struct HaAuthTests {
    @Test("with trackerToken the client follows a tracker under auth; without it the tracker refuses sub_all and the client says so once")
    func trackerToken() async throws {
        let root = ZbusProcess.makeTemporaryDirectory("zbus-ha-auth")
        defer { try? FileManager.default.removeItem(at: root) }
        let secret = "ha-TRACKER-7731"
        let trackerDirectory = root.appendingPathComponent("tracker")
        let brokerDirectory = root.appendingPathComponent("broker")
        for directory in [trackerDirectory, brokerDirectory] {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        }
        let trackerFile = trackerDirectory.appendingPathComponent("node.yaml")
        try """
            node:
              name: tracker
              log_level: warning
            auth:
              tokens:
                - { name: cluster, secret: \(secret), tracker: true }
            modules:
              - module: tracker
            """.write(to: trackerFile, atomically: true, encoding: .utf8)
        let tracker = try ZbusProcess(arguments: ["--config", trackerFile.path], directory: trackerDirectory)
        defer { tracker.stop() }
        let brokerFile = brokerDirectory.appendingPathComponent("node.yaml")
        try """
            node:
              name: broker
              log_level: warning
            trackers: [127.0.0.1:\(tracker.port)]
            auth:
              report_token: \(secret)
            modules:
              - module: mq
            """.write(to: brokerFile, atomically: true, encoding: .utf8)
        let broker = try ZbusProcess(arguments: ["--config", brokerFile.path], directory: brokerDirectory)
        defer { broker.stop() }
        let trackers = [HostAndPort(host: "127.0.0.1", port: tracker.port)]
        let brokerAddress = "127.0.0.1:\(broker.port)"

        var secured = HaConfiguration()
        secured.trackerToken = secret
        let client = HaBroker(trackers: trackers, configuration: quickConfiguration(), haConfiguration: secured)
        let seen = await client.waitForTopology(timeout: .seconds(20)) { $0.serverAddresses.contains(brokerAddress) }
        #expect(seen != nil, "the client with the tracker token sees the broker: \(client.topology)")
        await client.close()

        // Without the token: refused (403), logged once at error naming the setting, and no topology.
        let logs = CapturedLogs()
        var quick = HaConfiguration()
        quick.trackerBackoff = Backoff(initial: .milliseconds(20), maximum: .milliseconds(50), jitter: 0)
        let anonymous = HaBroker(trackers: trackers, configuration: quickConfiguration(), haConfiguration: quick,
                                 logger: logs.logger(label: "zbus.client.ha"))
        // It keeps retrying with its backoff: the later refusals at debug, the error line only once.
        #expect(await eventually(within: 20) { logs.lines(containing: "still refuses sub_all").count >= 3 })
        let refusals = logs.lines(containing: "refuses sub_all")
        #expect(refusals.filter { $0.level == .error }.count == 1, "\(refusals.map(\.message))")
        let refusal = try #require(refusals.first)
        #expect(refusal.level == .error)
        #expect(refusal.message.contains("trackerToken"))
        #expect(refusal.metadata["answer"]?.contains("tracker permission") == true, "\(refusal.metadata)")
        #expect(refusal.metadata["sent_token"] == "false")
        #expect(anonymous.topology.isEmpty)
        await anonymous.close()
        #expect(!tracker.stderr.contains(secret) && !broker.stderr.contains(secret))
    }
}
