import Foundation
import Testing
import ZbusKernel
import ZbusTestSupport

/// The tracker and tracker reporting with real `zbus` processes on OS-chosen ports.
@Suite("Tracker with real nodes", .blockingIO(.heavy))
struct TrackerProcessTests {
    /// The fields of an entry line that do not vary from run to run (all but lastUpdateTime).
    private func shape(_ entry: TrackerEntry) -> String {
        "\(entry.id)\t\(entry.server)\t\(entry.mode)\t\(entry.unconsumedCount)\t\(entry.consumerCount)"
    }

    @Test("probe_ha.py's exchanges get the transcript's answers (times and ports aside)")
    func transcript() throws {
        let trackerDirectory = ZbusProcess.makeTemporaryDirectory("zbus-tracker")
        let brokerDirectory = ZbusProcess.makeTemporaryDirectory("zbus-broker")
        let tracker = try startTracker(directory: trackerDirectory)
        defer { tracker.cleanUp() }

        // The transcript's broker found HaQ in its store: make it so here, with a first run that reports nowhere.
        let first = try startBroker(directory: brokerDirectory, trackers: [])
        #expect(try call(first.port, [("cmd", "create_mq"), ("mq_name", "HaQ"), ("mq_mode", "1"), ("id", "h0")]).status == 200)
        #expect(first.stop() == 0)

        // === sub_all reply (no servers yet): pub_all, id kept, empty body.
        let sub = try TrackerSubscriber(port: tracker.port, id: "sa1")
        defer { sub.close() }
        #expect(sub.view == TrackerView())

        // === subscriber gets after MqServer start: server_join, then HaQ's entry_update.
        let broker = try startBroker(directory: brokerDirectory, trackers: [tracker.port])
        defer { broker.cleanUp() }
        let server = "127.0.0.1:\(broker.port)"
        let join = try #require(try sub.next(timeout: 10))
        #expect(join.cmd == "server_join")
        #expect(join.server == server)
        #expect(join.id == nil)
        let update = try #require(try sub.next(timeout: 10))
        #expect(update.cmd == "entry_update")
        #expect(shape(try TrackerEntry(parsing: Substring(update.bodyString))) == "HaQ\t\(server)\t1\t0\t0")

        // === after create_mq of the existing HaQ: nothing new (the refreshes aside).
        let client = try broker.connect()
        defer { client.close() }
        client.request([("cmd", "create_mq"), ("mq_name", "HaQ"), ("mq_mode", "1"), ("id", "h1")])
        #expect(try client.receive(timeout: 10).status == 200)

        // === after consume: an entry_update with one consumer, at once (not at the next refresh).
        client.request([("cmd", "consume"), ("mq", "HaQ"), ("id", "h2")])
        #expect(try sub.waitForView(within: 10) { $0.entries["HaQ@\(server)"]?.consumerCount == 1 })

        // === periodic: the entry is reported again, every 2 s (6.3.0: every 5 s).
        for _ in 0..<2 {
            let refresh = try #require(try sub.waitFor("entry_update", within: 10))
            #expect(shape(try TrackerEntry(parsing: Substring(refresh.bodyString))) == "HaQ\t\(server)\t1\t0\t1")
        }

        // === second subscriber: one server_join, then pub_all with id sa2 and HaQ's line.
        let sub2 = try TrackerSubscriber(port: tracker.port, id: "sa2")
        defer { sub2.close() }
        #expect(sub2.view.servers == [server])
        #expect(sub2.view.entries.values.map(shape) == ["HaQ\t\(server)\t1\t0\t1"])

        // === after MqServer stop: server_leave naming it.
        #expect(broker.stop() == 0)
        let leave = try #require(try sub.waitFor("server_leave", within: 10))
        #expect(leave.server == server)
        #expect(sub.view == TrackerView())
        try? FileManager.default.removeItem(at: brokerDirectory)
    }

    @Test("remove_mq reaches subscribers as entry_remove; a graceful stop as server_leave; a SIGKILLed broker leaves every view within 3 s")
    func departures() throws {
        let directories = (0..<4).map { _ in ZbusProcess.makeTemporaryDirectory("zbus-tracker") }
        defer { for directory in directories { try? FileManager.default.removeItem(at: directory) } }
        let trackers = try directories[0..<2].map { try startTracker(directory: $0) }
        defer { for tracker in trackers { tracker.cleanUp() } }
        let ports = trackers.map(\.port)
        let brokers = try directories[2..<4].map { try startBroker(directory: $0, trackers: ports) }
        defer { for broker in brokers { broker.cleanUp() } }
        let servers = brokers.map { "127.0.0.1:\($0.port)" }
        for broker in brokers {
            for queue in ["Keep", "Gone"] {
                #expect(try call(broker.port, [("cmd", "create_mq"), ("mq_name", queue), ("mq_mode", "1")]).status == 200)
            }
        }
        let subscribers = try ports.map { try TrackerSubscriber(port: $0) }
        defer { for subscriber in subscribers { subscriber.close() } }
        let everything = Set(servers.flatMap { ["Keep@\($0)", "Gone@\($0)"] })
        for subscriber in subscribers {
            #expect(try subscriber.waitForView(within: 10) { Set($0.keys) == everything })
        }

        #expect(try call(brokers[0].port, [("cmd", "remove_mq"), ("mq_name", "Gone")]).status == 200)
        for subscriber in subscribers {
            let removal = try #require(try subscriber.waitFor("entry_remove", within: 10))
            #expect(removal.bodyString == "Gone")
            #expect(removal.server == servers[0])
            #expect(subscriber.view.entries["Gone@\(servers[0])"] == nil)
        }

        #expect(brokers[0].stop() == 0)
        // The goodbye itself, not only the closed connection, told the trackers.
        for tracker in trackers { #expect(tracker.waitForLog("server left")) }
        for subscriber in subscribers {
            let leave = try #require(try subscriber.waitFor("server_leave", within: 10))
            #expect(leave.server == servers[0])
            #expect(subscriber.view.servers == [servers[1]])
        }

        brokers[1].crash()
        for subscriber in subscribers {
            #expect(try subscriber.waitForView(within: 3) { $0.servers.isEmpty && $0.entries.isEmpty })
        }
    }

    @Test("a hung broker (SIGSTOP), its connection open, leaves the view after expire_after; resumed, it is back")
    func hungBroker() throws {
        let directories = (0..<2).map { _ in ZbusProcess.makeTemporaryDirectory("zbus-tracker") }
        defer { for directory in directories { try? FileManager.default.removeItem(at: directory) } }
        let tracker = try startTracker(directory: directories[0], extra: "expire_after: 1s")
        defer { tracker.cleanUp() }
        let broker = try startBroker(directory: directories[1], trackers: [tracker.port])  // no MQ: it only joins
        defer {
            kill(broker.process.processIdentifier, SIGCONT)
            broker.cleanUp()
        }
        let server = "127.0.0.1:\(broker.port)"
        let subscriber = try TrackerSubscriber(port: tracker.port)
        defer { subscriber.close() }
        #expect(try subscriber.waitForView(within: 10) { $0.servers == [server] })
        // Only a server seen to refresh expires: wait until the broker has joined again (every 2 s).
        let refreshing = monotonicSeconds() + 10
        while monotonicSeconds() < refreshing {
            let info = try JSONParser.parse(try call(tracker.port, [("cmd", "tracker_info")]).bodyString)
            if info["servers"]?[server]?["refreshes"] == .bool(true) { break }
            usleep(100_000)
        }
        kill(broker.process.processIdentifier, SIGSTOP)
        let leave = try #require(try subscriber.waitFor("server_leave", within: 10))
        #expect(leave.server == server)
        #expect(subscriber.view.servers.isEmpty)

        kill(broker.process.processIdentifier, SIGCONT)
        #expect(try subscriber.waitForView(within: 10) { $0.servers == [server] })
    }

    @Test("a tracker killed and restarted knows every broker and entry again within 3 s")
    func trackerRestart() throws {
        let directories = (0..<3).map { _ in ZbusProcess.makeTemporaryDirectory("zbus-tracker") }
        defer { for directory in directories { try? FileManager.default.removeItem(at: directory) } }
        var tracker = try startTracker(directory: directories[0])
        let port = tracker.port
        let brokers = try directories[1...].map { try startBroker(directory: $0, trackers: [port]) }
        defer { for broker in brokers { broker.cleanUp() } }
        var expected: Set<String> = []
        for (index, broker) in brokers.enumerated() {
            for queue in ["Shared", "Only\(index)"] {
                #expect(try call(broker.port, [("cmd", "create_mq"), ("mq_name", queue), ("mq_mode", "1")]).status == 200)
                expected.insert("\(queue)@127.0.0.1:\(broker.port)")
            }
        }
        do {
            let subscriber = try TrackerSubscriber(port: port)
            defer { subscriber.close() }
            #expect(try subscriber.waitForView(within: 10) { Set($0.keys) == expected })
        }

        tracker.crash()
        // Same port (what the brokers' files name); the OS chose it for the first run.
        tracker = try startTracker(directory: directories[0], listen: "127.0.0.1:\(port)")
        defer { tracker.cleanUp() }
        let subscriber = try TrackerSubscriber(port: port)
        defer { subscriber.close() }
        #expect(try subscriber.waitForView(within: 3) { Set($0.keys) == expected && $0.servers.count == 2 },
                "the restarted tracker knows \(subscriber.view.keys), expected \(expected.sorted())")
    }

    @Test("a zbus 6.3 broker's raw reports are understood, an entry that is not refreshed expires, and bad reports get precise 4xx")
    func rawReports() throws {
        let directory = ZbusProcess.makeTemporaryDirectory("zbus-tracker")
        defer { try? FileManager.default.removeItem(at: directory) }
        let tracker = try startTracker(directory: directory, extra: "expire_after: 1s\nmax_line_bytes: 256\nmax_servers: 2")
        defer { tracker.cleanUp() }
        let subscriber = try TrackerSubscriber(port: tracker.port)
        defer { subscriber.close() }

        // What a 6.3.0 MqServer sends (TrackPub): server_join with its address, then tab-separated entries.
        let reporter = try WireClient(port: tracker.port)
        defer { reporter.close() }
        reporter.request([("cmd", "server_join"), ("server", "10.1.2.3:15555")])
        reporter.request([("cmd", "entry_update")], body: "OldQ\t10.1.2.3:15555\t1\t1795271766270\t3\t1")
        #expect(try subscriber.waitFor("server_join", within: 10)?.server == "10.1.2.3:15555")
        let update = try #require(try subscriber.waitFor("entry_update", within: 10))
        #expect(update.bodyString == "OldQ\t10.1.2.3:15555\t1\t1795271766270\t3\t1")

        // The JSON view.
        let info = try call(tracker.port, [("cmd", "tracker_info"), ("id", "i1")])
        #expect(info.status == 200 && info.id == "i1")
        let json = try JSONParser.parse(info.bodyString)
        #expect(json["entryCount"] == .int(1))
        #expect(json["servers"]?["10.1.2.3:15555"]?["entries"] != nil)

        // Not refreshed for expire_after: removed and relayed (6.3.0 kept it forever); the server stays while its
        // connection does.
        let expired = try #require(try subscriber.waitFor("entry_remove", within: 10))
        #expect(expired.bodyString == "OldQ" && expired.server == "10.1.2.3:15555")
        #expect(subscriber.view.servers == ["10.1.2.3:15555"])

        // Bad reports: each refused with its own 4xx and text; nothing relayed.
        reporter.request([("cmd", "entry_update"), ("id", "b1")], body: "OldQ\t10.1.2.3:15555\tone\t0\t0\t0")
        let bad = try reporter.receive(timeout: 10)
        #expect(bad.status == 400 && bad.id == "b1" && bad.bodyString.contains("mode (field 3)"))
        reporter.request([("cmd", "entry_update"), ("id", "b2")], body: String(repeating: "x", count: 300))
        let long = try reporter.receive(timeout: 10)
        #expect(long.status == 413 && long.bodyString.contains("tracker.max_line_bytes"))
        reporter.request([("cmd", "server_join"), ("server", "10.1.2.4:15555")])
        reporter.request([("cmd", "server_join"), ("server", "10.1.2.5:15555"), ("id", "b3")])
        let full = try reporter.receive(timeout: 10)
        #expect(full.status == 429 && full.bodyString.contains("tracker.max_servers"))
        #expect(try subscriber.waitFor("server_join", within: 10)?.server == "10.1.2.4:15555")

        // The reporter's connection drops: both its servers leave at once.
        reporter.close()
        #expect(try subscriber.waitForView(within: 10) { $0.servers.isEmpty })
    }

    @Test("a subscriber that stops reading is closed once its unread pushes pass node.limits.max_output_bytes, and the tracker serves on")
    func slowSubscriber() throws {
        let directory = ZbusProcess.makeTemporaryDirectory("zbus-tracker")
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = try writeNodeFile("""
            node:
              limits:
                max_output_bytes: 64KiB
            modules:
              - module: tracker
            """, in: directory, name: "tracker.yaml")
        let tracker = try ZbusProcess(arguments: ["--config", file], directory: directory)
        defer { tracker.cleanUp() }
        let stalled = try TrackerSubscriber(port: tracker.port)
        defer { stalled.close() }
        let reporter = try WireClient(port: tracker.port)
        defer { reporter.close() }
        reporter.request([("cmd", "server_join"), ("server", "10.1.2.3:15555")])
        // Every update is relayed to the subscriber, which reads none of them.
        let padding = String(repeating: "p", count: 200)
        var batch = ""
        for index in 0..<1_000 {
            batch += "GET / HTTP/1.1\r\ncmd: entry_update\r\ncontent-length: \(padding.utf8.count + 40)\r\n\r\n"
            let line = "Q\(padding)\t10.1.2.3:15555\t1\t\(index)\t0\t0"
            batch += line + String(repeating: "0", count: padding.utf8.count + 40 - line.utf8.count)
        }
        var closed = false
        for _ in 0..<500 where !closed {
            #expect(reporter.send(batch))
            closed = tracker.stderr.contains("closing a slow consumer")
        }
        #expect(tracker.waitForLog("closing a slow consumer", within: 10))
        #expect(try stalled.client.readUntilClose(timeout: 30).closed)
        let fresh = try TrackerSubscriber(port: tracker.port)
        defer { fresh.close() }
        #expect(fresh.view.servers == ["10.1.2.3:15555"])
    }

    @Test("config/cluster: the shipped trackers and brokers pass check-config and run as a cluster on the test's own ports")
    func shippedCluster() throws {
        let cluster = ZbusProcess.packageRoot.appendingPathComponent("config/cluster")
        let files = try FileManager.default.contentsOfDirectory(atPath: cluster.path).filter { $0.hasSuffix(".yaml") }.sorted()
        #expect(files == ["broker-1.yaml", "broker-2.yaml", "tracker-1.yaml", "tracker-2.yaml"])
        for file in files {
            let result = try runCommand(ZbusProcess.binaryPath, ["check-config", cluster.appendingPathComponent(file).path])
            #expect(result.status == 0, "\(file): \(result.stderr)")
        }
        let directories = (0..<4).map { _ in ZbusProcess.makeTemporaryDirectory("zbus-cluster") }
        defer { for directory in directories { try? FileManager.default.removeItem(at: directory) } }
        let trackers = try (0..<2).map { index in
            try ZbusProcess(arguments: ["--config", cluster.appendingPathComponent("tracker-\(index + 1).yaml").path],
                            directory: directories[index])
        }
        defer { for tracker in trackers { tracker.cleanUp() } }
        // The brokers' files with the trackers' fixed ports swapped for the ones the OS gave the test's trackers.
        let brokers = try (0..<2).map { index in
            var yaml = try String(contentsOf: cluster.appendingPathComponent("broker-\(index + 1).yaml"), encoding: .utf8)
            yaml = yaml.replacingOccurrences(of: "127.0.0.1:16666", with: "127.0.0.1:\(trackers[0].port)")
                .replacingOccurrences(of: "127.0.0.1:16667", with: "127.0.0.1:\(trackers[1].port)")
            #expect(!yaml.contains(":1666"), "broker-\(index + 1).yaml names trackers other than 16666 and 16667")
            let file = try writeNodeFile(yaml, in: directories[index + 2], name: "broker.yaml")
            return try ZbusProcess(arguments: ["--config", file], directory: directories[index + 2])
        }
        defer { for broker in brokers { broker.cleanUp() } }
        for broker in brokers {
            #expect(try call(broker.port, [("cmd", "create_mq"), ("mq_name", "ClusterQ"), ("mq_mode", "1")]).status == 200)
        }
        let expected = Set(brokers.map { "ClusterQ@127.0.0.1:\($0.port)" })
        for tracker in trackers {
            let subscriber = try TrackerSubscriber(port: tracker.port)
            defer { subscriber.close() }
            #expect(try subscriber.waitForView(within: 10) { Set($0.keys) == expected })
        }
    }
}

@Suite("Tracker and broker on one node", .blockingIO(.heavy))
struct TrackerAndBrokerTests {
    @Test("one node runs the tracker and the mq module together; it serves MQs and a broker reporting to it")
    func both() throws {
        let directories = (0..<2).map { _ in ZbusProcess.makeTemporaryDirectory("zbus-tracker") }
        defer { for directory in directories { try? FileManager.default.removeItem(at: directory) } }
        let file = try writeNodeFile("""
            modules:
              - module: mq
              - module: tracker
            """, in: directories[0], name: "both.yaml")
        let node = try ZbusProcess(arguments: ["--config", file], directory: directories[0])
        defer { node.cleanUp() }
        #expect(try call(node.port, [("cmd", "create_mq"), ("mq_name", "Local"), ("mq_mode", "1")]).status == 200)
        let broker = try startBroker(directory: directories[1], trackers: [node.port])
        defer { broker.cleanUp() }
        #expect(try call(broker.port, [("cmd", "create_mq"), ("mq_name", "Remote"), ("mq_mode", "1")]).status == 200)
        let subscriber = try TrackerSubscriber(port: node.port)
        defer { subscriber.close() }
        #expect(try subscriber.waitForView(within: 10) { $0.keys == ["Remote@127.0.0.1:\(broker.port)"] })
        #expect(try call(node.port, [("cmd", "produce"), ("mq", "Local"), ("ack", "1")], body: "m").status == 200)
    }
}

@Suite("Tracker reporting address", .blockingIO(.heavy))
struct TrackerReportingAddressTests {
    @Test("a broker reports its node.advertise address, in server_join and in every entry")
    func advertise() throws {
        let directories = (0..<2).map { _ in ZbusProcess.makeTemporaryDirectory("zbus-tracker") }
        defer { for directory in directories { try? FileManager.default.removeItem(at: directory) } }
        let tracker = try startTracker(directory: directories[0])
        defer { tracker.cleanUp() }
        let subscriber = try TrackerSubscriber(port: tracker.port)
        defer { subscriber.close() }
        let file = try writeNodeFile("""
            node:
              advertise: 10.9.8.7:15555
            trackers: [127.0.0.1:\(tracker.port)]
            modules:
              - module: mq
            """, in: directories[1], name: "broker.yaml")
        let broker = try ZbusProcess(arguments: ["--config", file], directory: directories[1])
        defer { broker.cleanUp() }
        #expect(try subscriber.waitFor("server_join", within: 10)?.server == "10.9.8.7:15555")
        #expect(try call(broker.port, [("cmd", "create_mq"), ("mq_name", "Adv"), ("mq_mode", "2")]).status == 200)
        let update = try #require(try subscriber.waitFor("entry_update", within: 10))
        let entry = try TrackerEntry(parsing: Substring(update.bodyString))
        #expect(entry.id == "Adv" && entry.server == "10.9.8.7:15555" && entry.mode == 2)
    }
}

@Suite("Tracker hostile reports", .blockingIO(.heavy))
struct TrackerHostileReportTests {
    @Test("a server address that is not HOST:PORT, a join without one or an entry id with control characters gets 400; nothing reaches the subscribers")
    func badAddressesAndIds() throws {
        let directory = ZbusProcess.makeTemporaryDirectory("zbus-tracker")
        defer { try? FileManager.default.removeItem(at: directory) }
        let tracker = try startTracker(directory: directory)
        defer { tracker.cleanUp() }
        let subscriber = try TrackerSubscriber(port: tracker.port)
        defer { subscriber.close() }
        let reporter = try WireClient(port: tracker.port)
        defer { reporter.close() }

        // A lone CR in the server field was relayed into every subscriber's `server` header.
        let refused: [(String, [(String, String)], String?)] = [
            ("CR in the server", [("cmd", "entry_update")], "Q\t10.1.2.3:1\rcmd: x\t1\t0\t0\t0"),
            ("no port", [("cmd", "entry_update")], "Q\tgarbage\t1\t0\t0\t0"),
            ("port 0", [("cmd", "server_join"), ("server", "10.1.2.3:0")], nil),
            ("a list", [("cmd", "server_join"), ("server", "10.1.2.3:1;10.1.2.4:1")], nil),
            ("ESC in the id", [("cmd", "entry_update")], "Q\u{1B}[31m\t10.1.2.3:1\t1\t0\t0\t0"),
        ]
        for (index, (what, headers, body)) in refused.enumerated() {
            reporter.request(headers + [("id", "r\(index)")], body: body)
            let reply = try reporter.receive(timeout: 10)
            #expect(reply.status == 400 && reply.id == "r\(index)", "\(what): \(reply.status ?? 0) \(reply.bodyString)")
            #expect(reply.bodyString.contains("server address") || reply.bodyString.contains("entry id"), "\(what): \(reply.bodyString)")
        }
        // A join that names no server: the node's own address used to be stamped there, listing the tracker itself.
        reporter.request([("cmd", "server_join"), ("id", "noserver")])
        let unnamed = try reporter.receive(timeout: 10)
        #expect(unnamed.status == 400 && unnamed.bodyString.contains("needs a `server: HOST:PORT` header"), "\(unnamed.status ?? 0) \(unnamed.bodyString)")
        // The first push the subscriber gets is the good report's, and the tracker serves on.
        reporter.request([("cmd", "server_join"), ("server", "10.1.2.3:15555")])
        #expect(try subscriber.next(timeout: 10)?.server == "10.1.2.3:15555")
        #expect(subscriber.view.servers == ["10.1.2.3:15555"])
    }
}
