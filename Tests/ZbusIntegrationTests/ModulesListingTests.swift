import Testing
import ZbusTestSupport

@Suite("zbus modules", .blockingIO(.heavy))
struct ModulesListingTests {
    @Test("lists the shipped modules with their keys and what each contributes to the extension points, without the example module")
    func listing() throws {
        let result = try runCommand(ZbusProcess.binaryPath, ["modules"])
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n").map(String.init)
        #expect(lines.filter { !$0.hasPrefix(" ") }.map { String($0.prefix { $0 != ":" }) } == ["monitor", "mq", "proxy", "rpc", "tracker"])
        #expect(lines.contains("    commands: add_key, consume, create_mq, data, produce, query_mq, remove_key, remove_mq, route"))
        #expect(lines.contains("    claims the default route (requests without a command)"))
        #expect(lines.contains("    RPC codecs: json, raw"))
        #expect(lines.contains("    proxy adapter kinds: http, tcp"))
        #expect(lines.contains("    keys: codec, services"))
        #expect(lines.contains("    URL paths: /, /health, /metrics, /monitor/api/mq, /monitor/api/overview, /monitor/app.css, /monitor/app.js"))
        #expect(lines.contains("    claims the MQ statistics (the MQs the monitor shows)"))
        #expect(lines.contains("    commands: entry_remove, entry_update, server_join, server_leave, sub_all, tracker_info"))
    }
}
