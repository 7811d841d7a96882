import Foundation
import Testing
import ZbusTestSupport

@Suite("zbus binary", .serialized, .blockingIO(.heavy))
struct BinaryTests {
    @Test("the default config starts a node; curl gets OK by header and by URL")
    func defaultConfigWithCurl() throws {
        let config = ZbusProcess.packageRoot.appendingPathComponent("config/zbus.yaml").path
        let node = try ZbusProcess(arguments: ["--config", config])
        defer { node.cleanUp() }
        let curl = "/usr/bin/curl"
        try #require(FileManager.default.isExecutableFile(atPath: curl), "curl is needed for this test (apt-get install curl)")
        let byHeader = try runCommand(curl, ["-s", "-m", "5", "-H", "cmd: test", "http://127.0.0.1:\(node.port)/"])
        #expect(byHeader.stdout == "OK")
        let byURL = try runCommand(curl, ["-s", "-m", "5", "http://127.0.0.1:\(node.port)/?cmd=test"])
        #expect(byURL.stdout == "OK")
        // curl with a body large enough to make it send `Expect: 100-continue` is not left waiting.
        let body = String(repeating: "x", count: 4096)
        let started = Date()
        let posted = try runCommand(curl, ["-s", "-m", "5", "-H", "cmd: test", "--data-binary", body, "http://127.0.0.1:\(node.port)/"])
        #expect(posted.stdout == "OK")
        #expect(Date().timeIntervalSince(started) < 0.9, "curl waited for 100 Continue")
    }

    @Test("garbage, huge headers, huge content-length, half messages and 1,000 dropped connections do not hurt the node")
    func robustness() throws {
        let node = try ZbusProcess()
        defer { node.cleanUp() }

        // Garbage: a 4xx, then the connection closes.
        let garbage = try node.connect()
        garbage.send([0x00, 0xFF, 0x13, 0x37] + Array("\r\n\r\n".utf8))
        let garbageReply = try garbage.readUntilClose(timeout: 5)
        #expect(String(decoding: garbageReply.bytes, as: UTF8.self).hasPrefix("HTTP/1.1 400 "))
        #expect(garbageReply.closed)

        // A 1 MiB header line: 431 as soon as the limit is crossed.
        let hugeHeader = try node.connect()
        hugeHeader.send("GET / HTTP/1.1\r\nx-big: " + String(repeating: "a", count: 1 << 20) + "\r\n\r\n")
        let hugeReply = try hugeHeader.readUntilClose(timeout: 5)
        #expect(String(decoding: hugeReply.bytes, as: UTF8.self).hasPrefix("HTTP/1.1 431 "))

        // content-length of 10^12: 413 without waiting for the body.
        let hugeBody = try node.connect()
        hugeBody.send("POST / HTTP/1.1\r\ncmd: test\r\ncontent-length: 1000000000000\r\n\r\n")
        let bodyReply = try hugeBody.readUntilClose(timeout: 5)
        let bodyText = String(decoding: bodyReply.bytes, as: UTF8.self)
        #expect(bodyText.hasPrefix("HTTP/1.1 413 "))
        #expect(bodyText.contains("1000000000000"))

        // Half a message, then the client goes away.
        for _ in 0..<20 {
            let half = try node.connect()
            half.send("POST / HTTP/1.1\r\ncmd: test\r\ncontent-length: 100\r\n\r\nonly part of the bo")
            half.close(reset: Bool.random())
        }
        let halfHead = try node.connect()
        halfHead.send("GET / HTTP/1.1\r\ncmd: te")
        halfHead.close()

        // 1,000 connections opened and dropped.
        var clients: [WireClient] = []
        for index in 0..<1000 {
            let client = try node.connect()
            if index % 3 == 0 { client.send("GET / HTTP/1.1\r\ncmd: test\r\n") }
            clients.append(client)
        }
        for (index, client) in clients.enumerated() { client.close(reset: index % 2 == 0) }
        clients.removeAll()

        #expect(node.isRunning)
        let fresh = try node.connect()
        fresh.request([("cmd", "test"), ("id", "after")])
        let reply = try fresh.receive()
        #expect(reply.bodyString == "OK")
        #expect(reply.id == "after")
    }

    @Test("SIGTERM and SIGINT stop the node cleanly with exit status 0")
    func gracefulStop() throws {
        for signal in [SIGTERM, SIGINT] {
            let node = try ZbusProcess()
            let client = try node.connect()
            client.request([("cmd", "test")])
            #expect(try client.receive().bodyString == "OK")
            let status = node.stop(signal: signal)
            #expect(status == 0, "exit status after signal \(signal): \(node.stderr)")
            #expect(node.stderr.contains("node stopped"))
            node.cleanUp()
        }
    }

    @Test("a busy port is a clear start-up error")
    func portInUse() throws {
        let first = try ZbusProcess()
        defer { first.cleanUp() }
        let result = try runCommand(ZbusProcess.binaryPath, ["--listen", "127.0.0.1:\(first.port)"], timeout: 20)
        #expect(result.status == 1)
        #expect(result.stderr.contains("cannot listen on 127.0.0.1:\(first.port)"))
    }

    @Test("--version and --help")
    func versionAndHelp() throws {
        let version = try runCommand(ZbusProcess.binaryPath, ["--version"])
        #expect(version.status == 0)
        #expect(version.stdout.hasPrefix("0."))
        let help = try runCommand(ZbusProcess.binaryPath, ["--help"])
        #expect(help.stdout.contains("check-config"))
        let runHelp = try runCommand(ZbusProcess.binaryPath, ["run", "--help"])
        #expect(runHelp.stdout.contains("--config"))
        #expect(runHelp.stdout.contains("--listen"))
        #expect(runHelp.stdout.contains("--store"))
        #expect(runHelp.stdout.contains("--log-level"))
    }
}

@Suite("zbus check-config", .blockingIO(.heavy))
struct CheckConfigTests {
    @Test("every shipped file under config/ passes check-config")
    func shippedConfigs() throws {
        let directory = ZbusProcess.packageRoot.appendingPathComponent("config")
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") }
        #expect(!files.isEmpty)
        for file in files {
            let result = try runCommand(ZbusProcess.binaryPath, ["check-config", directory.appendingPathComponent(file).path])
            #expect(result.status == 0, "\(file): \(result.stderr)")
        }
    }

    static let badFiles: [(name: String, yaml: String, expected: [String])] = [
        ("unknown-key", "node:\n  listn: 127.0.0.1:1\n", ["unknown-key.yaml:2:3", "node.listn", "unknown key", "allowed:"]),
        ("wrong-type", "node:\n  threads: lots\n", ["wrong-type.yaml:2:", "node.threads", "expected an integer"]),
        ("unknown-module", "modules:\n  - module: warp-drive\n", ["unknown-module.yaml:2:", "unknown module 'warp-drive'"]),
        ("bad-address", "node:\n  listen: localhost\n", ["bad-address.yaml:2:", "node.listen", "host:port"]),
        ("bad-yaml", "node:\n  name: 'unterminated\n", ["bad-yaml.yaml:", "not valid YAML"]),
        ("bad-size", "node:\n  limits:\n    max_header_bytes: 1\n", ["bad-size.yaml:3:", "max_header_bytes", "out of range"]),
        ("not-a-list", "modules:\n  module: mq\n", ["not-a-list.yaml:2:", "modules", "expected a list"]),
        ("bad-level", "node:\n  log_level: chatty\n", ["bad-level.yaml:2:", "node.log_level", "expected one of"]),
    ]

    @Test("bad files exit with status 2 and one message naming the file, line, key and what is allowed", arguments: badFiles.indices)
    func badFile(index: Int) throws {
        let (name, yaml, expected) = Self.badFiles[index]
        let directory = ZbusProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("\(name).yaml")
        try yaml.write(to: path, atomically: false, encoding: .utf8)
        for arguments in [["check-config", path.path], ["--config", path.path, "--listen", "127.0.0.1:0"]] {
            let result = try runCommand(ZbusProcess.binaryPath, arguments, timeout: 20)
            #expect(result.status == 2, "\(arguments): \(result.stderr)")
            let lines = result.stderr.split(separator: "\n")
            #expect(lines.count == 1, "one line expected: \(result.stderr)")
            for fragment in expected { #expect(result.stderr.contains(fragment), "'\(fragment)' missing from: \(result.stderr)") }
        }
    }

    @Test("a missing file exits 2 naming it")
    func missingFile() throws {
        let result = try runCommand(ZbusProcess.binaryPath, ["check-config", "/nonexistent/node.yaml"])
        #expect(result.status == 2)
        #expect(result.stderr.contains("/nonexistent/node.yaml"))
    }

    @Test("command-line overrides win over the file")
    func overrides() throws {
        let directory = ZbusProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("n.yaml")
        // The file's port is taken; the --listen override (port 0) must win or start-up would fail.
        let blocker = try ZbusProcess()
        defer { blocker.cleanUp() }
        try "node:\n  listen: 127.0.0.1:\(blocker.port)\n  store: /nonexistent/never\nmodules: []\n".write(to: path, atomically: false, encoding: .utf8)
        let node = try ZbusProcess(arguments: ["--config", path.path, "--log-level", "debug"])
        defer { node.cleanUp() }
        #expect(node.port != blocker.port)
        let client = try node.connect()
        client.request([("cmd", "test")])
        #expect(try client.receive().bodyString == "OK")
        client.request([("cmd", "nosuch")])
        #expect(try client.receive().status == 400)
        #expect(node.stderr.contains("debug"), "--log-level debug shows debug lines: \(node.stderr)")
    }
}
