import Foundation
import Testing
import ZbusTestSupport

/// What `deploy/` ships: the systemd unit passes `systemd-analyze verify` without a word, and the sample node file
/// starts a node.
@Suite("deploy/", .blockingIO(.heavy))
struct DeployTests {
    static let unitFile = ZbusProcess.packageRoot.appendingPathComponent("deploy/zbus.service")
    static let sampleConfig = ZbusProcess.packageRoot.appendingPathComponent("deploy/zbus.yaml")

    @Test("systemd-analyze verify accepts deploy/zbus.service without a warning")
    func unitVerifies() throws {
        let unit = try String(contentsOf: Self.unitFile, encoding: .utf8)
        #expect(unit.contains("\nExecStart=/usr/local/bin/zbus --config /etc/zbus/zbus.yaml\n"))
        let problems = try Self.verify(unit: unit)
        #expect(problems == nil, "\(problems ?? "")")
    }

    @Test("the check catches a broken unit (a misspelt key, a bad value)", arguments: [
        ("RestartSec=", "RestartSecs="), ("TimeoutStopSec=30s", "TimeoutStopSec=thirty"),
    ])
    func brokenUnitFails(original: String, broken: String) throws {
        let unit = try String(contentsOf: Self.unitFile, encoding: .utf8)
        try #require(unit.contains(original))
        let problems = try Self.verify(unit: unit.replacingOccurrences(of: original, with: broken))
        #expect(problems != nil, "systemd-analyze verify said nothing about \(broken)")
    }

    @Test("the unit's state directory is the sample config's store")
    func storeIsStateDirectory() throws {
        let unit = try String(contentsOf: Self.unitFile, encoding: .utf8)
        let config = try String(contentsOf: Self.sampleConfig, encoding: .utf8)
        let stateDirectory = try #require(Self.value(of: "StateDirectory=", in: unit))
        let store = try #require(Self.value(of: "store:", in: config))
        #expect(store == "/var/lib/\(stateDirectory)")
        #expect(Self.value(of: "WorkingDirectory=", in: unit) == store)
    }

    @Test("deploy/zbus.yaml passes check-config, starts a node (temporary store, port 0) that answers, and stops on SIGTERM with 0")
    func sampleConfigStarts() throws {
        let check = try runCommand(ZbusProcess.binaryPath, ["check-config", Self.sampleConfig.path], timeout: 30)
        #expect(check.status == 0, "\(check.stderr)")
        // --listen 127.0.0.1:0 and --store (a temporary directory) win over the file's listen and store.
        let node = try ZbusProcess(arguments: ["--config", Self.sampleConfig.path])
        defer { node.cleanUp() }
        let client = try node.connect()
        defer { client.close() }
        #expect(client.request([("cmd", "test"), ("id", "deploy")]))
        let reply = try client.receive()
        #expect(reply.status == 200 && reply.bodyString == "OK")
        #expect(node.stop() == 0, "exit status after SIGTERM: \(node.stderr)")
    }

    /// Runs `systemd-analyze verify` on a temporary copy of `unit` whose ExecStart names the built binary.
    /// - Returns: nil when it accepts the unit silently, else its exit status and output.
    static func verify(unit: String) throws -> String? {
        let analyzer = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].first { FileManager.default.isExecutableFile(atPath: $0) }
        let tool = try #require(analyzer, "systemd-analyze is needed for this test: apt-get install systemd (.ci/run installs it)")
        let directory = ZbusProcess.makeTemporaryDirectory("zbus-unit")
        defer { try? FileManager.default.removeItem(at: directory) }
        let copy = directory.appendingPathComponent("zbus.service")
        let binary = ZbusProcess.binaryPath
        try #require(!binary.contains(" "), "the unit's ExecStart cannot name \(binary) unquoted")
        try unit.replacingOccurrences(of: "ExecStart=/usr/local/bin/zbus ", with: "ExecStart=\(binary) ")
            .write(to: copy, atomically: true, encoding: .utf8)
        let result = try runCommand(tool, ["verify", copy.path], timeout: 60)
        let output = (result.stdout + result.stderr).trimmingCharacters(in: .whitespacesAndNewlines)
        guard result.status != 0 || !output.isEmpty else { return nil }
        return "systemd-analyze verify exited \(result.status): \(output)"
    }

    /// The value after `key` on the first line that starts with it (spaces trimmed, a YAML comment dropped).
    static func value(of key: String, in text: String) -> String? {
        for line in text.split(separator: "\n") {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            guard trimmed.hasPrefix(key) else { continue }
            let value = trimmed.dropFirst(key.count).split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            return value.trimmingCharacters(in: .whitespaces)
        }
        return nil
    }
}
