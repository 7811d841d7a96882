import Foundation
import Testing
import ZbusKernel
import ZbusTestSupport

/// A tracker with an `auth` section: a broker reports with `auth.report_token`, others are refused.
@Suite("Tracker access control", .serialized, .blockingIO(.heavy))
struct TrackerAuthTests {
    @Test("a tracker under auth takes reports only with the tracker permission; the broker presents report_token_file")
    func reportToken() throws {
        let directory = ZbusProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let secret = "trk-SECRET-5150"
        let trackerFile = try writeNodeFile("""
            auth:
              tokens:
                - { name: cluster, sha256: \(TokenDigest.hex(secret)), tracker: true }
            modules:
              - module: tracker
            """, in: directory, name: "tracker.yaml")
        let tracker = try ZbusProcess(arguments: ["--config", trackerFile], directory: directory)
        defer { tracker.cleanUp() }

        // Without a token: refused, naming the permission.
        let refused = try call(tracker.port, [("cmd", "server_join"), ("server", "10.9.9.9:1")])
        #expect(refused.status == 403 && refused.bodyString.contains("tracker permission"))
        #expect(try call(tracker.port, [("cmd", "tracker_info")]).status == 403)

        // A subscriber with the token follows the table.
        let subscriber = try WireClient(port: tracker.port)
        defer { subscriber.close() }
        subscriber.request([("cmd", "sub_all"), ("id", "s1"), ("token", secret)])
        #expect(try subscriber.receive(timeout: 10).cmd == TrackerCommand.pubAll)

        // A broker whose own auth section names the token file reports and is listed.
        let brokerDirectory = ZbusProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: brokerDirectory) }
        try secret.write(to: brokerDirectory.appendingPathComponent("report.token"), atomically: false, encoding: .utf8)
        let brokerFile = try writeNodeFile("""
            trackers: [127.0.0.1:\(tracker.port)]
            auth:
              report_token_file: report.token
            modules:
              - module: mq
            """, in: brokerDirectory, name: "broker.yaml")
        let broker = try ZbusProcess(arguments: ["--config", brokerFile], directory: brokerDirectory)
        defer { broker.cleanUp() }
        var joined = false
        while let push = try subscriber.receiveIfAny(timeout: 10) {
            if push.cmd == TrackerCommand.serverJoin, push.server == "127.0.0.1:\(broker.port)" {
                #expect(push.token == nil, "the reporter's token is not relayed")
                joined = true
                break
            }
        }
        #expect(joined, "the broker's report was accepted")
        let info = try call(tracker.port, [("cmd", "tracker_info"), ("token", secret)])
        #expect(info.status == 200 && info.bodyString.contains("127.0.0.1:\(broker.port)"))
        #expect(!broker.stderr.contains(secret) && !tracker.stderr.contains(secret))
    }
}
