import ArgumentParser
import Logging
import ServiceLifecycle
import UnixSignals
import Zbus

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@main
struct ZbusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "zbus",
        abstract: "zbus node: MQ + RPC + service bus, speaking the zbus 6 protocol over HTTP/1.1 framing.",
        discussion: exitCodes + "\n\n" + operatorExitCodes,
        version: ZbusVersion.current,
        subcommands: [
            Run.self, CheckConfig.self, Modules.self, MQCommand.self, ProduceCommand.self, ConsumeCommand.self, ClusterCommand.self,
        ],
        defaultSubcommand: Run.self
    )

    /// The exit statuses, shown by `--help` so that supervisors and scripts can act on them (docs/operations.md).
    static let exitCodes = """
        Exit codes:
          0   normal stop (SIGINT, SIGTERM); check-config: the file is good
          1   start-up failure: port taken, store in use or unreadable, a module failed
          2   configuration error, one line naming the file, line, key and the rule
          64  command-line usage error: an unknown option or a missing argument
        """

    /// The exit statuses of the operator commands (`mq`, `produce`, `consume`, `cluster`; docs/cli.md).
    static let operatorExitCodes = """
        Exit codes of mq, produce, consume and cluster (docs/cli.md):
          0   done
          1   the server refused (unknown MQ, wrong token, 4xx/5xx) or is not zbus
          3   consume: fewer than --count messages came within --timeout
          64  command-line usage error
          66  produce --file: the file cannot be read
          69  the server is unreachable (refused) or closed the connection
          75  the server did not answer within --timeout
        """
}

/// Options shared by commands that load a node file.
struct NodeOptions: ParsableArguments {
    @Option(name: .long, help: "The node file (YAML). Without it the node runs on the built-in defaults (127.0.0.1:15555, ./data).")
    var config: String?

    @Option(name: .long, help: "Listen address HOST:PORT, or none (TLS port only); wins over node.listen.")
    var listen: String?

    @Option(name: .long, help: "Store directory; wins over node.store.")
    var store: String?

    @Option(name: .long, help: "Log level (trace, debug, info, notice, warning, error, critical); wins over node.log_level.")
    var logLevel: String?

    /// Loads the node file and applies the overrides; exits with code 2 and one line on any error.
    func loadConfig() throws -> NodeConfig {
        do throws(ConfigError) {
            var config: NodeConfig
            if let path = config_path {
                config = try NodeConfig.load(file: path)
            } else {
                config = try NodeConfig.parse(yaml: DefaultNodeFile.yaml, file: "<built-in defaults>")
            }
            if listen?.lowercased() == "none" {
                guard config.tls != nil else {
                    throw ConfigError(file: "--listen", keyPath: "", message: "`none` needs `node.tls` (a TLS port) in the node file")
                }
                config.listensPlain = false
            } else if let listen {
                do throws(HostAndPort.ParseError) {
                    config.listen = try HostAndPort(parsing: listen)
                } catch {
                    throw ConfigError(file: "--listen", keyPath: "", message: error.description)
                }
            }
            if let store { config.store = store }
            if let logLevel {
                guard let level = Logger.Level(rawValue: logLevel) else {
                    throw ConfigError(file: "--log-level", keyPath: "", message:
                        "'\(logLevel)' is not a level; allowed: \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                config.logLevel = level
            }
            return config
        } catch {
            ExitReporter.fail(error)
        }
    }

    private var config_path: String? { config }
}

/// Prints a configuration error and exits with status 2.
enum ExitReporter {
    static func fail(_ error: ConfigError) -> Never {
        FileHandleStderr.write("zbus: configuration error: \(error)\n")
        exit(2)
    }
}

enum FileHandleStderr {
    static func write(_ text: String) {
        var text = text
        text.withUTF8 { bytes in _ = Glibc.write(2, bytes.baseAddress, bytes.count) }
    }
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run", abstract: "Run a node (the default command).", discussion: ZbusCommand.exitCodes)

    @OptionGroup var options: NodeOptions

    @Option(name: .long, help: """
        Write the bound HOST:PORT to this file once the node accepts connections (the TLS port's to FILE.tls, \
        written first, with node.tls).
        """)
    var readyFile: String?

    func run() async throws {
        let config = try options.loadConfig()
        let level = config.logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "zbus")
        DescriptorLimit.raise(logger: logger, config: config)
        let node: Node
        do throws(ConfigError) {
            node = try Node(config: config, registry: .standard, logger: logger)
        } catch {
            ExitReporter.fail(error)
        }
        let address: HostAndPort
        do {
            address = try await node.start()
        } catch {
            FileHandleStderr.write("zbus: \(error)\n")
            throw ExitCode(1)
        }
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [.init(service: node)]
        if node.hasReloadableFiles {
            // Trapped before the ready file appears, so that a SIGHUP sent once it is there reloads (by default it
            // would end the process).
            let hangups = await UnixSignalsSequence(trapping: .sighup)
            services.append(.init(service: HangupReloader(node: node, hangups: hangups, logger: logger), successTerminationBehavior: .ignore))
        }
        if let readyFile {
            // As a service of the group, it runs after the group has trapped SIGINT/SIGTERM: whoever waits for the
            // file may signal the node at once and get a graceful stop.
            services.append(.init(service: ReadyFileAnnouncer(path: readyFile, address: address, tlsAddress: node.tlsAddress),
                                  successTerminationBehavior: .ignore))
        }
        let group = ServiceGroup(
            configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}

/// On each SIGHUP, reloads the TLS files (the node's and the modules' own) and the `auth` section of the node file.
/// Each logs its outcome, and a bad file or section keeps what is in use (docs/security.md, docs/tls.md).
struct HangupReloader: Service {
    let node: Node
    let hangups: UnixSignalsSequence
    let logger: Logger

    func run() async throws {
        for await _ in hangups.cancelOnGracefulShutdown() {
            logger.info("SIGHUP: reloading the TLS files and the auth section")
            // One failing leaves the other to be tried: they are independent.
            _ = try? node.reloadTLS()
            _ = try? node.reloadAuth()
        }
    }
}

/// Writes the bound address to a file once the node is up and signals are trapped.
///
/// With a TLS port, its address goes to `FILE.tls` first, so that whoever sees `FILE` finds both; `FILE` keeps its
/// one line, which scripts read with `cut -d: -f2`.
struct ReadyFileAnnouncer: Service {
    let path: String
    let address: HostAndPort
    let tlsAddress: HostAndPort?

    func run() async throws {
        if let tlsAddress { writeReadyFile(path + ".tls", address: tlsAddress) }
        writeReadyFile(path, address: address)
    }

    private func writeReadyFile(_ path: String, address: HostAndPort) {
        // Write then rename, so a watcher never reads a half-written file.
        let temporary = path + ".tmp"
        guard let file = fopen(temporary, "w") else { return }
        fputs("\(address)\n", file)
        fclose(file)
        rename(temporary, path)
    }
}

struct CheckConfig: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Validate a node file and the module sections it names; exit 0 if good, 2 with the reason if not.")

    @Argument(help: "The node file to check.")
    var file: String

    func run() async throws {
        do throws(ConfigError) {
            let config = try NodeConfig.load(file: file)
            _ = try PluginRegistry.standard.makeModules(for: config, logger: Logger(label: "zbus.check"))
            var ports = config.listensPlain ? "\(config.listen)" : ""
            if let tls = config.tls { ports += (ports.isEmpty ? "" : " and ") + "TLS \(tls.listen)" }
            print("\(file): OK (node '\(config.name)' on \(ports), modules: \(config.modules.map(\.name).joined(separator: ", ")))")
        } catch {
            ExitReporter.fail(error)
        }
    }
}

struct Modules: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "modules", abstract: "List the plugin modules compiled into this binary and their config keys.")

    func run() async throws {
        let registry = PluginRegistry.standard
        var quiet = Logger(label: "zbus.modules")
        quiet.logLevel = .critical
        for name in registry.names {
            guard let type = registry.module(named: name) else { continue }
            print("\(name): \(type.summary)")
            if !type.configKeys.isEmpty { print("    keys: \(type.configKeys.joined(separator: ", "))") }
            // What the module contributes with an empty section; a module may contribute more once configured.
            var config = NodeConfig()
            config.modules = [ModuleConfig(name: name)]
            guard let loaded = try? registry.loadModules(for: config, logger: quiet) else { continue }
            for line in loaded.contributions.summary(ofModule: name) { print("    \(line)") }
        }
    }
}
