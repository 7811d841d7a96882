import Testing
@testable import ZbusKernel

@Suite("NodeConfig")
struct NodeConfigTests {
    @Test("a full node file maps onto NodeConfig")
    func full() throws {
        let config = try NodeConfig.parse(yaml: """
            node:
              name: broker-1
              listen: 0.0.0.0:16000
              store: /tmp/zbus-x
              log_level: debug
              threads: 2
              limits: { max_header_bytes: 8KiB, max_body_bytes: 1MiB }
            trackers: [127.0.0.1:16666, "127.0.0.1:16667"]
            modules:
              - module: hello
                greeting: hi
            """, file: "n.yaml")
        #expect(config.name == "broker-1")
        #expect(config.listen == HostAndPort(host: "0.0.0.0", port: 16000))
        #expect(config.store == "/tmp/zbus-x")
        #expect(config.logLevel == .debug)
        #expect(config.threads == 2)
        #expect(config.limits == MessageLimits(maxHeaderBytes: 8192, maxBodyBytes: 1 << 20))
        #expect(config.trackers.map(\.description) == ["127.0.0.1:16666", "127.0.0.1:16667"])
        #expect(config.modules.map(\.name) == ["hello"])
    }

    @Test("defaults when keys are absent")
    func defaults() throws {
        let config = try NodeConfig.parse(yaml: "modules: []", file: "n.yaml")
        #expect(config.listen.description == "127.0.0.1:15555")
        #expect(config.store == "./data")
        #expect(config.limits == .default)
    }

    /// Each bad file, and what the one-line error must say (file, line, key, what is allowed).
    static let badFiles: [(yaml: String, expected: [String])] = [
        ("node:\n  lisen: 1.2.3.4:5\n", ["bad.yaml:2:", "node.lisen", "unknown key", "allowed: name, listen"]),
        ("nodes:\n  name: x\n", ["bad.yaml:1:", "nodes", "unknown key", "allowed: node, trackers, modules"]),
        ("node:\n  listen: nowhere\n", ["bad.yaml:2:", "node.listen", "not host:port"]),
        ("node:\n  listen: 127.0.0.1:99999\n", ["node.listen", "valid port"]),
        ("node:\n  threads: many\n", ["bad.yaml:2:", "node.threads", "expected an integer", "'many'"]),
        ("node:\n  log_level: loud\n", ["node.log_level", "expected one of trace | debug | info"]),
        ("node:\n  limits:\n    max_body_bytes: huge\n", ["bad.yaml:3:", "node.limits.max_body_bytes", "expected a size"]),
        ("node: [1, 2]\n", ["bad.yaml:1:", "node", "expected a mapping"]),
        ("modules:\n  - module: nosuch\n", ["bad.yaml:2:", "unknown module 'nosuch'", "registered: hello"]),
        ("modules:\n  - module: hello\n    greting: hi\n", ["bad.yaml:3:", "modules[0].greting", "unknown key", "allowed: module, greeting"]),
        ("modules:\n  - greeting: hi\n", ["bad.yaml:2:", "missing `module: NAME`"]),
        ("modules:\n  - module: hello\n  - module: hello\n", ["bad.yaml:3:", "listed twice"]),
        ("modules: hello\n", ["bad.yaml:1:", "modules", "expected a list"]),
        ("node:\n  name: [unclosed\n", ["bad.yaml:", "not valid YAML"]),
        ("node:\n  name: a\n  name: b\n", ["bad.yaml", "duplicated key", "'name'"]),
        ("", ["bad.yaml", "empty"]),
        ("trackers: [nowhere]\n", ["bad.yaml:1:", "trackers[0]", "not host:port"]),
        ("modules:\n  - module: hello\n    greeting: [a]\n", ["modules[0].greeting", "expected a string"]),
    ]

    @Test("bad files are refused with a message naming file, line, key and what is allowed", arguments: badFiles.indices)
    func badFile(index: Int) throws {
        let (yaml, expected) = Self.badFiles[index]
        let registry = PluginRegistry().registering(HelloModule.self)
        do {
            let config = try NodeConfig.parse(yaml: yaml, file: "bad.yaml")
            _ = try registry.makeModules(for: config, logger: .init(label: "test"))
            Issue.record("accepted: \(yaml)")
        } catch {
            let text = error.description
            for fragment in expected { #expect(text.contains(fragment), "'\(fragment)' missing from: \(text)") }
        }
    }

    @Test("an unreadable file names the file and the reason")
    func unreadable() {
        #expect {
            _ = try NodeConfig.load(file: "/nonexistent/zbus.yaml")
        } throws: { error in
            "\(error)".contains("/nonexistent/zbus.yaml") && "\(error)".contains("No such file")
        }
    }

    @Test("sizes and durations", arguments: [("65536", 65536), ("64KiB", 65536), ("64k", 65536), ("32MiB", 32 << 20), ("1GB", 1 << 30)])
    func sizes(text: String, bytes: Int) {
        #expect(ByteSizeParser.parse(text) == bytes)
    }

    @Test("host and port forms")
    func hostAndPort() throws {
        #expect(try HostAndPort(parsing: "127.0.0.1:15555") == HostAndPort(host: "127.0.0.1", port: 15555))
        #expect(try HostAndPort(parsing: ":80") == HostAndPort(host: "0.0.0.0", port: 80))
        #expect(try HostAndPort(parsing: "[::1]:9").description == "[::1]:9")
        #expect(throws: HostAndPort.ParseError.self) { try HostAndPort(parsing: "localhost") }
    }

    @Test("two modules answering one command is a start-up error")
    func commandClash() throws {
        let config = try NodeConfig.parse(yaml: "modules:\n  - module: hello\n  - module: hello-clash\n", file: "c.yaml")
        let registry = PluginRegistry().registering(HelloModule.self).registering(HelloClashModule.self)
        #expect {
            _ = try registry.makeModules(for: config, logger: .init(label: "test"))
        } throws: { error in
            "\(error)".contains("answers command 'hello', which module 'hello' already answers")
        }
    }
}

@Suite("Auth config")
struct AuthConfigTests {
    @Test("token digests are SHA-256 in sha256sum's hex form (FIPS 180-4 vectors)")
    func sha256() {
        #expect(TokenDigest.hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(TokenDigest.hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(TokenDigest.hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")
            == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    }

    @Test("tokens map to grants by pattern; admin implies produce and consume; deny by default")
    func grants() throws {
        let config = try NodeConfig.parse(yaml: """
            auth:
              tokens:
                - { name: app, secret: s1, produce: ["orders.*", "log"], consume: "replies.*" }
                - { name: ops, sha256: \(TokenDigest.hex("s2")), admin: ["*"], tracker: true }
            """, file: "n.yaml")
        let auth = try #require(config.auth)
        let app = auth.caller(token: "s1")
        #expect(app.kind == .token("app"))
        #expect(app.grants.permissions(on: "orders.eu") == .produce)
        #expect(app.grants.permissions(on: "log") == .produce)
        #expect(app.grants.permissions(on: "logs") == [])
        #expect(app.grants.permissions(on: "replies.1") == .consume)
        #expect(auth.caller(token: "s2").grants.permissions(on: "x") == .all)
        #expect(auth.caller(token: "s2").grants.isAdminEverywhere)
        #expect(auth.caller(token: "nope").kind == .unknown)
        #expect(auth.caller(token: nil).grants.isEmpty, "anonymous gets nothing by default")
        #expect(!auth.metricsOpen)
        #expect(NamePattern("a*b*c").matches("aXbYc"))
        #expect(!NamePattern("a*b*c").matches("aXbY"))
        #expect(NamePattern("*").matches(""))
    }

    @Test("config errors name file, line and key, and never quote a secret")
    func errors() {
        func problem(_ yaml: String) -> String {
            do {
                _ = try NodeConfig.parse(yaml: yaml, file: "n.yaml")
                return "parsed"
            } catch {
                return error.description
            }
        }
        let badDigest = problem("auth:\n  tokens:\n    - name: a\n      sha256: topsecretvalue\n")
        #expect(badDigest.hasPrefix("n.yaml:4:"))
        #expect(badDigest.contains("sha256"))
        #expect(!badDigest.contains("topsecretvalue"))
        #expect(problem("auth:\n  tokens:\n    - name: a\n").contains("has no secret"))
        #expect(problem("auth:\n  tokens:\n    - { name: a, secret: x }\n    - { name: a, secret: y }\n").contains("used twice"))
        #expect(problem("auth:\n  tokens:\n    - { name: a, secret: x }\n    - { name: b, secret: x }\n").contains("same secret"))
        #expect(problem("auth:\n  tokens:\n    - { name: a, secret_file: /nonexistent/zbus.token }\n").contains("cannot read"))
        #expect(problem("auth:\n  tokns: []\n").contains("unknown key"))
        #expect(problem("auth:\n  tokens:\n    - { name: a, secret: x, produce: [\"\"] }\n").contains("empty MQ name pattern"))
    }
}
