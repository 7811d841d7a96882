import Foundation
import Testing
import ZbusKernel
import ZbusTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// The operator's command line (`zbus mq|produce|consume|cluster`, docs/cli.md) against real node processes: the
/// table and JSON forms, and failures that name the server and what failed, with the documented exit statuses.
@Suite("zbus operator commands", .blockingIO(.heavy))
struct OperatorCLITests {
    /// Runs `zbus ARGUMENTS --server 127.0.0.1:PORT`.
    private func zbus(_ arguments: [String], port: Int, timeout: Double = 60) throws -> (status: Int32, stdout: String, stderr: String) {
        try runCommand(ZbusProcess.binaryPath, arguments + ["--server", "127.0.0.1:\(port)"], timeout: timeout)
    }

    private func json(_ text: String) throws -> [String: Any] {
        let object = try JSONSerialization.jsonObject(with: Data(text.utf8))
        return try #require(object as? [String: Any], "not a JSON object: \(text)")
    }

    private func lines(_ text: String) -> [String] {
        text.split(separator: "\n").map(String.init)
    }

    @Test("mq create, list, info and remove in table and JSON form, with the counts the node holds")
    func mqCommands() throws {
        let node = try ZbusProcess()
        defer { node.cleanUp() }
        let port = node.port

        let created = try zbus(["mq", "create", "Orders"], port: port)
        #expect(created.status == 0, "\(created.stderr)")
        #expect(created.stdout == "created MQ 'Orders' (mq) on 127.0.0.1:\(port)\n")
        let news = try json(try zbus(["mq", "create", "News", "--mode", "pubsub+memory", "--json"], port: port).stdout)
        #expect(news["created"] as? Bool == true)
        #expect((news["mq"] as? [String: Any])?["mode"] as? String == "pubsub+memory")
        #expect((news["mq"] as? [String: Any])?["mode_bits"] as? Int == 6)
        let again = try zbus(["mq", "create", "Orders", "--mode", "pubsub"], port: port)
        #expect(again.status == 0)
        #expect(again.stdout == "MQ 'Orders' already exists on 127.0.0.1:\(port) as mq, not pubsub: left unchanged\n")

        for body in ["a", "b", "c"] {
            let produced = try zbus(["produce", "Orders", body], port: port)
            #expect(produced.status == 0, "\(produced.stderr)")
        }

        let table = try zbus(["mq", "list"], port: port)
        #expect(table.status == 0, "\(table.stderr)")
        let rows = lines(table.stdout)
        // Rate columns (PRODUCE/S, CONSUME/S) follow IN FLIGHT when the node measures rates.
        let header = rows.first?.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ") ?? ""
        #expect(header.hasPrefix("NAME MODE DEPTH CONSUMERS IN FLIGHT") && header.hasSuffix("LAST ACTIVITY"), "\(header)")
        let cells = rows.dropFirst().map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
        #expect(cells.map { Array($0.prefix(5)) } == [["News", "pubsub+memory", "0", "0", "0"], ["Orders", "mq", "3", "0", "0"]])

        let listing = try json(try zbus(["mq", "list", "--json"], port: port).stdout)
        #expect(listing["server"] as? String == "127.0.0.1:\(port)")
        let mqs = try #require(listing["mqs"] as? [[String: Any]])
        #expect(mqs.map { $0["name"] as? String } == ["News", "Orders"])
        #expect(mqs.map { $0["depth"] as? Int } == [0, 3])
        #expect(mqs.map { $0["consumers"] as? Int } == [0, 0])
        #expect(mqs.map { $0["in_flight"] as? Int } == [0, 0])
        #expect(mqs.allSatisfy { ($0["last_update_ms"] as? Int ?? 0) > 0 && $0["opened"] as? Bool == true })

        let info = try zbus(["mq", "info", "Orders"], port: port)
        #expect(info.status == 0, "\(info.stderr)")
        // `key  value` lines: two spaces at least between a key (which may have one space) and its value.
        let details = Dictionary(lines(info.stdout).compactMap { line -> (String, String)? in
            guard let gap = line.range(of: "  ") else { return nil }
            return (String(line[..<gap.lowerBound]), line[gap.upperBound...].trimmingCharacters(in: .whitespaces))
        }, uniquingKeysWith: { first, _ in first })
        #expect(details["MQ"] == "Orders")
        #expect(details["mode"] == "mq (1)")
        #expect(details["depth"] == "3")
        #expect(details["consumers"] == "0")
        #expect(details["max length"] == "unlimited")

        let infoJSON = try json(try zbus(["mq", "info", "Orders", "--json"], port: port).stdout)
        let mq = try #require(infoJSON["mq"] as? [String: Any])
        #expect(mq["name"] as? String == "Orders")
        #expect(mq["depth"] as? Int == 3)
        #expect(mq["mode"] as? String == "mq")
        #expect((mq["consumer_list"] as? [Any])?.isEmpty == true)
        #expect(mq.keys.sorted() == ["consume_rate", "consumed", "consumer_list", "consumers", "creator", "depth", "in_flight",
                                      "last_update_ms", "master_mq", "max_length", "mode", "mode_bits", "name", "opened",
                                      "produce_rate", "produced"])
        // Totals and rates are null from a node that does not count them; when it does, they are the node's counts.
        #expect(mq["produced"] is NSNull || mq["produced"] as? Int == 3)
        #expect(mq["consumed"] is NSNull || mq["consumed"] as? Int == 0)

        let removed = try zbus(["mq", "remove", "News"], port: port)
        #expect(removed.status == 0, "\(removed.stderr)")
        #expect(removed.stdout == "removed MQ 'News' from 127.0.0.1:\(port)\n")
        let removedJSON = try json(try zbus(["mq", "remove", "Orders", "--json"], port: port).stdout)
        #expect(removedJSON["removed"] as? Bool == true)
        #expect(removedJSON["mq"] as? String == "Orders")
        let empty = try zbus(["mq", "list"], port: port)
        #expect(empty.stdout == "no MQ on 127.0.0.1:\(port)\n")
        #expect((try json(try zbus(["mq", "list", "--json"], port: port).stdout)["mqs"] as? [Any])?.isEmpty == true)
    }

    @Test("produce from an argument, a file, stdin and --count; consume prints them in order, as text and as JSON lines")
    func produceAndConsume() throws {
        let node = try ZbusProcess()
        defer { node.cleanUp() }
        let port = node.port
        #expect(try zbus(["mq", "create", "Jobs"], port: port).status == 0)

        let first = try zbus(["produce", "Jobs", "first job"], port: port)
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.stdout.hasPrefix("produced 1 message (9 bytes, id "))
        #expect(first.stdout.hasSuffix(") to MQ 'Jobs' on 127.0.0.1:\(port), stored\n"))

        let file = node.directory.appendingPathComponent("body.txt")
        try "from a file".write(to: file, atomically: true, encoding: .utf8)
        let fromFile = try json(try zbus(["produce", "Jobs", "--file", file.path, "--json", "--header", "kind=file"], port: port).stdout)
        #expect(fromFile["produced"] as? Int == 1)
        #expect(fromFile["acknowledged"] as? Bool == true)
        let fileId = try #require((fromFile["ids"] as? [String])?.first)

        let piped = try runCommand("/bin/sh", ["-c", "printf 'from stdin' | \"$0\" produce Jobs --server 127.0.0.1:\(port)", ZbusProcess.binaryPath])
        #expect(piped.status == 0, "\(piped.stderr)")

        let batch = try json(try zbus(["produce", "Jobs", "same", "--count", "300", "--json"], port: port).stdout)
        #expect(batch["produced"] as? Int == 300)
        let batchIds = try #require(batch["ids"] as? [String])
        #expect(batchIds.count == 300 && Set(batchIds).count == 300)

        let unacknowledged = try zbus(["produce", "Jobs", "no ack", "--no-ack"], port: port)
        #expect(unacknowledged.status == 0, "\(unacknowledged.stderr)")
        #expect(unacknowledged.stdout.hasSuffix(", written without acknowledgement\n"))

        let text = try zbus(["consume", "Jobs", "--count", "2"], port: port)
        #expect(text.status == 0, "\(text.stderr)")
        let textLines = lines(text.stdout)
        #expect(textLines.count == 4)
        #expect(textLines[0].hasPrefix("--- message 1: id ") && textLines[0].hasSuffix(", 9 bytes"))
        #expect(textLines[1] == "first job")
        #expect(textLines[2] == "--- message 2: id \(fileId), 11 bytes")
        #expect(textLines[3] == "from a file")

        let records = try zbus(["consume", "Jobs", "--count", "301", "--json"], port: port)
        #expect(records.status == 0, "\(records.stderr)")
        let parsed = try lines(records.stdout).map(json)
        #expect(parsed.count == 301)
        #expect(parsed.first?["body"] as? String == "from stdin")
        #expect(parsed.dropFirst().map { $0["id"] as? String } == batchIds)
        #expect(parsed.allSatisfy { $0["mq"] as? String == "Jobs" && $0["body_base64"] is NSNull })
        #expect(parsed.last?["size"] as? Int == 4)

        let last = try json(try zbus(["consume", "Jobs", "--json"], port: port).stdout)
        #expect(last["body"] as? String == "no ack")
        let info = try json(try zbus(["mq", "info", "Jobs", "--json"], port: port).stdout)
        #expect((info["mq"] as? [String: Any])?["depth"] as? Int == 0)
        #expect((info["mq"] as? [String: Any])?["in_flight"] as? Int == 0, "consume acknowledges what it printed")
    }

    @Test("consume exits 3 when fewer messages than --count come within --timeout, after printing those that came")
    func consumeIncomplete() throws {
        let node = try ZbusProcess()
        defer { node.cleanUp() }
        #expect(try zbus(["mq", "create", "Few"], port: node.port).status == 0)
        #expect(try zbus(["produce", "Few", "only one"], port: node.port).status == 0)
        let result = try zbus(["consume", "Few", "--count", "2", "--timeout", "0.5"], port: node.port)
        #expect(result.status == 3)
        #expect(lines(result.stdout).last == "only one")
        #expect(result.stderr == "zbus: 1 of 2 messages from MQ 'Few' on 127.0.0.1:\(node.port) within 0.5 s (raise --timeout to wait longer)\n")
    }

    @Test("an unknown MQ exits 1 naming the server, the MQ and the request", arguments: [
        ["mq", "info", "Nope"], ["mq", "remove", "Nope"], ["produce", "Nope", "x"], ["consume", "Nope", "--timeout", "2"],
    ])
    func unknownMQ(arguments: [String]) throws {
        let node = try ZbusProcess()
        defer { node.cleanUp() }
        let result = try zbus(arguments, port: node.port)
        #expect(result.status == 1, "\(arguments): \(result.stderr)")
        #expect(result.stderr.hasPrefix("zbus: 127.0.0.1:\(node.port) has no MQ named 'Nope' ("), "\(arguments): \(result.stderr)")
        #expect(result.stdout.isEmpty)
    }

    @Test("a produce to an RPC MQ without consumers exits 1 with the node's own 404, not as an unknown MQ")
    func serviceDown() throws {
        let node = try ZbusProcess()
        defer { node.cleanUp() }
        #expect(try zbus(["mq", "create", "Svc", "--mode", "rpc"], port: node.port).status == 0)
        let result = try zbus(["produce", "Svc", "call"], port: node.port)
        #expect(result.status == 1)
        #expect(result.stderr == "zbus: 127.0.0.1:\(node.port) refused `produce` to MQ 'Svc': 404 MQ(Svc) Service Down\n")
    }

    @Test("--help of zbus and of each operator command lists the operator exit codes")
    func helpListsExitCodes() throws {
        for arguments in [["--help"], ["mq", "--help"], ["mq", "list", "--help"], ["produce", "--help"], ["consume", "--help"], ["cluster", "--help"]] {
            let help = try runCommand(ZbusProcess.binaryPath, arguments, timeout: 20)
            #expect(help.status == 0)
            for line in ["1   the server refused", "3   consume: fewer than --count", "66  produce --file", "69  the server is unreachable",
                         "75  the server did not answer"] {
                #expect(help.stdout.contains(line), "\(arguments): \(line)")
            }
        }
    }

    @Test("mq remove --if-exists succeeds without the MQ")
    func removeIfExists() throws {
        let node = try ZbusProcess()
        defer { node.cleanUp() }
        let result = try zbus(["mq", "remove", "Nope", "--if-exists", "--json"], port: node.port)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(try json(result.stdout)["removed"] as? Bool == false)
    }

    @Test("a wrong register token exits 1 with the node's 403 and a hint")
    func wrongToken() throws {
        let directory = ZbusProcess.makeTemporaryDirectory("zbus-cli-token")
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = directory.appendingPathComponent("node.yaml")
        try "modules:\n  - module: mq\n    register_token: s3cret\n".write(to: config, atomically: true, encoding: .utf8)
        let node = try ZbusProcess(arguments: ["--config", config.path])
        defer { node.cleanUp() }
        let refused = try zbus(["mq", "create", "Guarded", "--token", "wrong"], port: node.port)
        #expect(refused.status == 1)
        #expect(refused.stderr == "zbus: 127.0.0.1:\(node.port) refused `create_mq` for MQ 'Guarded': 403 register_token mismatch (pass the right token with --token)\n")
        let accepted = try zbus(["mq", "create", "Guarded", "--token", "s3cret"], port: node.port)
        #expect(accepted.status == 0, "\(accepted.stderr)")
    }

    @Test("a refused port exits 69 naming the server and the system's reason", arguments: [
        ["mq", "list"], ["mq", "info", "Orders"], ["produce", "Orders", "x"], ["consume", "Orders"], ["cluster"],
    ])
    func refused(arguments: [String]) throws {
        let port = refusingPort()
        let result = try zbus(arguments, port: port)
        #expect(result.status == 69, "\(arguments): \(result.stderr)")
        #expect(result.stderr.hasPrefix("zbus: cannot connect to 127.0.0.1:\(port): "), "\(arguments): \(result.stderr)")
        #expect(result.stderr.contains("\(ErrorText.reason(errno: ECONNREFUSED)) (errno \(ECONNREFUSED))"), "\(arguments): \(result.stderr)")
        #expect(result.stdout.isEmpty)
    }

    @Test("a server that accepts and never answers exits 75 naming the server, the request and the wait")
    func silentServer() throws {
        let listener = try SilentListener()
        defer { listener.close() }
        let result = try zbus(["mq", "list", "--timeout", "0.5"], port: listener.port)
        #expect(result.status == 75, "\(result.stderr)")
        #expect(result.stderr == "zbus: no answer from 127.0.0.1:\(listener.port) to `data` within 0.5 s (is it a zbus node? raise --timeout for a slow one)\n")
    }

    @Test("bad arguments exit 64 naming what is wrong", arguments: [
        (["mq", "create", "X", "--mode", "fast"], "--mode 'fast' is not a mode"),
        (["produce", "X", "body", "--file", "/dev/null"], "not both"),
        (["produce", "X", "body", "--header", "cmd=remove_mq"], "--header cmd is set by the command"),
        (["consume", "X", "--count", "0"], "--count must be"),
        (["consume", "X", "--timeout", "0"], "--timeout must be"),
        (["mq", "info"], "<name>"),
        (["mq", "list", "--server", "nonsense"], "--server: 'nonsense' is not host:port"),
    ])
    func badArguments(arguments: [String], named: String) throws {
        let result = try runCommand(ZbusProcess.binaryPath, arguments, timeout: 20)
        #expect(result.status == 64, "\(arguments): \(result.stderr)")
        #expect(result.stderr.contains(named), "\(arguments): \(result.stderr)")
    }

    @Test("produce --file exits 66 when the file cannot be read")
    func unreadableFile() throws {
        let missing = "/nonexistent/zbus-body-\(UUID().uuidString)"
        let result = try runCommand(ZbusProcess.binaryPath, ["produce", "X", "--file", missing, "--server", refusingAddress()], timeout: 20)
        #expect(result.status == 66)
        #expect(result.stderr == "zbus: cannot read \(missing): no such file\n")
    }

    @Test("cluster against a node without the tracker module exits 1 saying it is not a tracker")
    func clusterNotATracker() throws {
        let node = try ZbusProcess()
        defer { node.cleanUp() }
        let result = try zbus(["cluster"], port: node.port)
        #expect(result.status == 1)
        #expect(result.stderr.hasPrefix("zbus: 127.0.0.1:\(node.port) is not a tracker: it answered `sub_all` with 400 "), "\(result.stderr)")
    }

    @Test("cluster reads a tracker's answer in the zbus 6.3 wire form: server_join pushes, then pub_all with tab-separated entries")
    func clusterWireForm() throws {
        // The answer of a zbus 6.3 TrackServer to a second subscriber, with a second server that has joined without
        // entries, a second entry, and a line that is not an entry (counted, not fatal).
        let tracker = try ScriptedTracker(joins: ["127.0.0.1:15556", "127.0.0.1:15557"], entries: [
            "HaQ\t127.0.0.1:15556\t1\t1795271766270\t0\t1",
            "Rpc\t127.0.0.1:15556\t8\t1795271766271\t3\t2",
            "a damaged line\twith too few fields",
        ])
        defer { tracker.close() }
        let table = try zbus(["cluster"], port: tracker.port)
        #expect(table.status == 0, "\(table.stderr)")
        let rows = lines(table.stdout).map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
        #expect(rows.first == ["tracker", "127.0.0.1:\(tracker.port):", "2", "servers,", "2", "entries"])
        #expect(rows.contains(["127.0.0.1:15556", "2"]))
        #expect(rows.contains(["127.0.0.1:15557", "0"]))
        #expect(rows.contains { Array($0.prefix(5)) == ["HaQ", "127.0.0.1:15556", "mq", "0", "1"] })
        #expect(rows.contains { Array($0.prefix(5)) == ["Rpc", "127.0.0.1:15556", "rpc", "3", "2"] })
        #expect(lines(table.stdout).last == "(1 line of the tracker's table could not be read)")
        #expect(tracker.requests.allSatisfy { $0.contains("cmd: sub_all") })

        let view = try json(try zbus(["cluster", "--json"], port: tracker.port).stdout)
        #expect(view["tracker"] as? String == "127.0.0.1:\(tracker.port)")
        let servers = try #require(view["servers"] as? [[String: Any]])
        #expect(servers.map { $0["address"] as? String } == ["127.0.0.1:15556", "127.0.0.1:15557"])
        #expect(servers.map { $0["entries"] as? Int } == [2, 0])
        let entries = try #require(view["entries"] as? [[String: Any]])
        #expect(entries.map { $0["mq"] as? String } == ["HaQ", "Rpc"])
        #expect(entries.map { $0["mode_bits"] as? Int } == [1, 8])
        #expect(entries.map { $0["depth"] as? Int } == [0, 3])
        #expect(entries.map { $0["consumers"] as? Int } == [1, 2])
        #expect(entries.map { $0["last_update_ms"] as? Int } == [1795271766270, 1795271766271])
        #expect(view["unreadable_lines"] as? Int == 1)
    }
}

extension OperatorCLITests {
    @Test("cluster shows a real tracker's view: the brokers reporting to it, their MQs and depths, and a broker that left")
    func clusterRealTracker() async throws {
        let directory = ZbusProcess.makeTemporaryDirectory("zbus-cli-cluster")
        defer { try? FileManager.default.removeItem(at: directory) }
        let trackerFile = directory.appendingPathComponent("tracker.yaml")
        try "node:\n  name: tracker\nmodules:\n  - module: tracker\n".write(to: trackerFile, atomically: true, encoding: .utf8)
        let tracker = try ZbusProcess(arguments: ["--config", trackerFile.path])
        defer { tracker.cleanUp() }
        let brokerFile = directory.appendingPathComponent("broker.yaml")
        try "trackers: [127.0.0.1:\(tracker.port)]\nmodules:\n  - module: mq\n".write(to: brokerFile, atomically: true, encoding: .utf8)
        let first = try ZbusProcess(arguments: ["--config", brokerFile.path])
        defer { first.cleanUp() }
        let second = try ZbusProcess(arguments: ["--config", brokerFile.path])
        defer { second.cleanUp() }
        for (broker, count) in [(first, 2), (second, 1)] {
            #expect(try zbus(["mq", "create", "Orders"], port: broker.port).status == 0)
            #expect(try zbus(["produce", "Orders", "x", "--count", "\(count)"], port: broker.port).status == 0)
        }
        let firstAddress = "127.0.0.1:\(first.port)"
        let secondAddress = "127.0.0.1:\(second.port)"

        // The brokers report on their own schedule: read the view until it shows both.
        var view: [String: Any] = [:]
        let reported = try await eventually(within: 15) {
            view = try json(try zbus(["cluster", "--json"], port: tracker.port).stdout)
            let entries = view["entries"] as? [[String: Any]] ?? []
            let depths = Dictionary(entries.map { ("\($0["mq"] ?? "")@\($0["server"] ?? "")", $0["depth"] as? Int ?? -1) }, uniquingKeysWith: { $1 })
            return depths == ["Orders@\(firstAddress)": 2, "Orders@\(secondAddress)": 1]
        }
        #expect(reported, "\(view)")
        let servers = try #require(view["servers"] as? [[String: Any]])
        #expect(Set(servers.compactMap { $0["address"] as? String }) == [firstAddress, secondAddress])
        #expect(servers.allSatisfy { $0["entries"] as? Int == 1 })

        let table = try zbus(["cluster"], port: tracker.port)
        #expect(table.status == 0, "\(table.stderr)")
        let rows = lines(table.stdout).map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
        #expect(rows.first == ["tracker", "127.0.0.1:\(tracker.port):", "2", "servers,", "2", "entries"])
        #expect(rows.contains { Array($0.prefix(5)) == ["Orders", firstAddress, "mq", "2", "0"] })
        #expect(rows.contains { Array($0.prefix(5)) == ["Orders", secondAddress, "mq", "1", "0"] })

        #expect(second.stop() == 0)
        let left = try await eventually(within: 10) {
            let now = try json(try zbus(["cluster", "--json"], port: tracker.port).stdout)
            return (now["servers"] as? [[String: Any]])?.compactMap { $0["address"] as? String } == [firstAddress]
        }
        #expect(left)
    }
}

extension OperatorCLITests {
    @Test("consume --topic subscribes to a pubsub MQ: mq info lists the subscriber and its topics, a binary body comes as base64")
    func pubSubAndBinary() async throws {
        let node = try ZbusProcess()
        defer { node.cleanUp() }
        let port = node.port
        #expect(try zbus(["mq", "create", "News", "--mode", "pubsub"], port: port).status == 0)
        let subscriber = try CommandProcess(ZbusProcess.binaryPath, [
            "consume", "News", "--topic", "*", "--count", "2", "--timeout", "30", "--json", "--server", "127.0.0.1:\(port)",
        ])
        // A pub/sub MQ hands a message only to those subscribed when it comes: wait for the subscription.
        var info: [String: Any] = [:]
        let subscribed = try await eventually(within: 20) {
            info = try json(try zbus(["mq", "info", "News", "--json"], port: port).stdout)
            return (info["mq"] as? [String: Any])?["consumers"] as? Int == 1
        }
        #expect(subscribed, "\(info)")
        let consumers = try #require((info["mq"] as? [String: Any])?["consumer_list"] as? [[String: Any]])
        #expect(consumers.map { $0["topics"] as? [String] } == [["*"]])
        #expect(consumers.allSatisfy { $0["status"] as? String == "CONNECTED" && ($0["address"] as? String)?.hasPrefix("127.0.0.1:") == true })

        #expect(try zbus(["produce", "News", "goal", "--topic", "sport"], port: port).status == 0)
        let binary = node.directory.appendingPathComponent("binary")
        try Data([0xFF, 0xFE, 0x00, 0x41]).write(to: binary)
        #expect(try zbus(["produce", "News", "--file", binary.path, "--topic", "raw"], port: port).status == 0)

        let result = subscriber.finish(timeout: 30)
        #expect(result.status == 0, "\(result.stderr)")
        let records = try lines(result.stdout).map(json)
        #expect(records.map { $0["body"] as? String } == ["goal", nil])
        #expect(records.map { ($0["headers"] as? [String: Any])?["topic"] as? String } == ["sport", "raw"])
        #expect(records.last?["body_base64"] as? String == Data([0xFF, 0xFE, 0x00, 0x41]).base64EncodedString())
        #expect(records.last?["size"] as? Int == 4)
    }
}

/// A loopback listener that accepts connections (the kernel completes them) and never answers.
final class SilentListener: @unchecked Sendable {
    let port: Int
    private let fd: Int32

    init() throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let fd = self.fd
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(fd, pointer, length) == 0 && listen(fd, 16) == 0 && getsockname(fd, pointer, &length) == 0
            }
        }
        guard bound else { throw WireClientError.connectFailed("silent listener: errno \(errno)") }
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    func close() { Glibc.close(fd) }
}

/// A tracker that answers `sub_all` with fixed `server_join` messages and a fixed `pub_all` table, as a zbus 6.3
/// TrackServer frames them (request-line messages, the subscription's `id` on `pub_all`).
final class ScriptedTracker: @unchecked Sendable {
    let port: Int
    private let listener: SilentListener
    private let thread: Thread
    private let received = LockedValue<[String]>([])

    /// The requests it read, as text.
    var requests: [String] { received.withLock { $0 } }

    init(joins: [String], entries: [String]) throws {
        listener = try SilentListener()
        port = listener.port
        let fd = listener.descriptor
        let received = self.received
        thread = Thread {
            while true {
                let connection = accept(fd, nil, nil)
                guard connection >= 0 else { return }
                var text = ""
                var buffer = [UInt8](repeating: 0, count: 4096)
                while !text.contains("\r\n\r\n") {
                    let count = read(connection, &buffer, buffer.count)
                    guard count > 0 else { break }
                    text += String(decoding: buffer[0..<count], as: UTF8.self)
                }
                received.withLock { $0.append(text) }
                let id = text.split(separator: "\r\n").first { $0.lowercased().hasPrefix("id:") }
                    .map { $0.dropFirst(3).trimmingCharacters(in: .whitespaces) } ?? ""
                var answer = ""
                for server in joins {
                    answer += "GET / HTTP/1.1\r\ncontent-length: 0\r\nserver: \(server)\r\nconnection: Keep-Alive\r\ncmd: server_join\r\n\r\n"
                }
                let table = entries.joined(separator: "\n")
                answer += "GET / HTTP/1.1\r\ncontent-length: \(table.utf8.count)\r\nconnection: Keep-Alive\r\ncmd: pub_all\r\nid: \(id)\r\n\r\n\(table)"
                let bytes = Array(answer.utf8)
                _ = bytes.withUnsafeBytes { send(connection, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                // The subscriber leaves once it has the table.
                while read(connection, &buffer, buffer.count) > 0 {}
                Glibc.close(connection)
            }
        }
        thread.start()
    }

    func close() {
        // Shutting the listening socket down wakes the blocked accept, which then fails and ends the thread.
        shutdown(listener.descriptor, Int32(SHUT_RDWR))
        listener.close()
    }
}

extension SilentListener {
    var descriptor: Int32 { fd }
}
