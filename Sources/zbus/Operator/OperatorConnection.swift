import Foundation
import ArgumentParser
import Logging
import Zbus

/// The options every operator command takes: where the server is and how to print.
struct ServerOptions: ParsableArguments {
    @Option(name: .long, help: "The node (or, for `cluster`, the tracker) to talk to: HOST:PORT.")
    var server: String = "127.0.0.1:15555"

    @Flag(name: .long, help: "Print JSON for scripts instead of tables (the fields are listed in docs/cli.md).")
    var json = false

    @Flag(name: .long, help: "Connect in TLS (to the node's node.tls port), trusting the system's CAs unless --tls-ca is given.")
    var tls = false

    @Option(name: .long, help: "Connect in TLS, trusting the CA certificates of this PEM file.")
    var tlsCa: String?

    @Option(name: .long, help: "Present this PEM client certificate (for a node with node.tls.ca_file); needs --tls-key.")
    var tlsCert: String?

    @Option(name: .long, help: "The client certificate's PEM private key.")
    var tlsKey: String?

    /// The TLS settings the options ask for, or `nil` for plain TCP.
    var clientTLS: ClientTLS? {
        get throws(ValidationError) {
            guard tls || tlsCa != nil || tlsCert != nil || tlsKey != nil else { return nil }
            do throws(TLSFileError) {
                return try ClientTLS(caFile: tlsCa, certificateFile: tlsCert, keyFile: tlsKey)
            } catch {
                throw ValidationError("--tls: \(error)")
            }
        }
    }

    /// The parsed `--server`.
    var address: HostAndPort {
        get throws(ValidationError) {
            let address: HostAndPort
            do throws(HostAndPort.ParseError) {
                address = try HostAndPort(parsing: server)
            } catch {
                throw ValidationError("--server: \(error.description)")
            }
            guard address.port > 0, address.port < 65536 else {
                throw ValidationError("--server: port \(address.port) is out of range 1-65535 (for example 127.0.0.1:15555)")
            }
            return address
        }
    }

    mutating func validate() throws {
        _ = try address
        _ = try clientTLS
    }
}

/// A wait in seconds as the command line gives it (`--timeout 2.5`), checked to be positive.
enum Seconds {
    /// `value` seconds as a duration; a usage error (exit 64) unless it is positive and finite.
    static func duration(_ value: Double, option: String) throws(ValidationError) -> Duration {
        guard value.isFinite, value > 0, value <= 86_400 else {
            throw ValidationError("\(option) must be a number of seconds above 0 and at most 86400, got \(value)")
        }
        return .milliseconds(Int64((value * 1000).rounded(.up)))
    }
}

/// One server an operator command talks to, through the project's client (a ``SingleBroker`` of one connection).
struct OperatorConnection: Sendable {
    /// The server as the messages name it (`127.0.0.1:15555`).
    let server: String
    /// The broker the commands go through.
    let broker: SingleBroker
    /// How long each answer may take.
    let timeout: Duration

    /// A connection to `address`; nothing connects before the first request.
    ///
    /// A refused or unreachable server is retried for at most two seconds (less with a shorter `timeout`): long enough
    /// to ride over a node's restart, short enough for an operator at a prompt.
    init(address: HostAndPort, timeout: Duration, tls: ClientTLS? = nil) {
        var configuration = ClientConfiguration()
        configuration.tls = tls
        configuration.connectTimeout = min(timeout, .seconds(2))
        configuration.requestTimeout = timeout
        configuration.heartbeatInterval = nil
        configuration.reconnectEagerly = false
        server = address.description
        self.timeout = timeout
        broker = SingleBroker(address: address, configuration: configuration, poolSize: 1, logger: OperatorLog.logger)
    }

    /// Sends `request` and returns the answer, whatever its status.
    ///
    /// - Parameter name: the request as error messages name it (`` `data` ``, `` `produce` to MQ 'Orders' ``).
    func send(_ request: Message, name: String) async throws(OperatorError) -> Message {
        var request = request
        if request.token == nil, let token = Self.authToken { request.token = token }
        do {
            return try await broker.send(request, timeout: timeout)
        } catch {
            throw .from(error, server: server, request: name)
        }
    }

    /// The token of a node with access control, from the environment (`ZBUS_TOKEN`, kept off the command line where
    /// other users could read it): sent in the `token` header of every request that carries none.
    static var authToken: String? {
        guard let token = ProcessInfo.processInfo.environment["ZBUS_TOKEN"], !token.isEmpty else { return nil }
        return token
    }

    /// Sends `request` and returns the answer if its status is 200.
    ///
    /// - Throws: ``OperatorError/unknownMQ(server:mq:request:)`` for a 404 when `mq` is given,
    ///   ``OperatorError/refused(server:request:status:body:)`` for any other status, or the connection's failure.
    func expectOK(_ request: Message, name: String, mq: String? = nil) async throws(OperatorError) -> Message {
        let reply = try await send(request, name: name)
        guard let status = reply.status, status != 200 else { return reply }
        // `MQ(name) Not Found`; another 404 (an RPC MQ's `Service Down`: no consumer) is shown as the node said it.
        if status == 404, let mq, reply.bodyString.hasSuffix("Not Found") { throw .unknownMQ(server: server, mq: mq, request: name) }
        throw .refused(server: server, request: name, status: status, body: reply.bodyString)
    }

    /// Closes the connection.
    func close() async {
        await broker.close()
    }
}

/// The operator commands' logger: warnings and worse, on stderr, so that stdout carries only the command's output.
enum OperatorLog {
    /// Sends every logger of the process to stderr at `warning`.
    static func bootstrap() {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = .warning
            return handler
        }
    }

    /// The logger the client's connections use.
    static var logger: Logger { Logger(label: "zbus.cli") }
}

/// A command that talks to one server: it runs ``execute(on:)`` and turns its failure into one line on stderr and
/// the failure's exit status.
protocol OperatorCommand: AsyncParsableCommand {
    /// `--server` and `--json`.
    var serverOptions: ServerOptions { get }
    /// How long the server may take to answer each request.
    var answerTimeout: Duration { get throws }
    /// The command's work.
    func execute(on connection: OperatorConnection) async throws(OperatorError)
}

extension OperatorCommand {
    func run() async throws {
        OperatorLog.bootstrap()
        let connection = OperatorConnection(address: try serverOptions.address, timeout: try answerTimeout,
                                            tls: try serverOptions.clientTLS)
        do {
            try await execute(on: connection)
        } catch {
            await connection.close()
            FileHandleStderr.write("zbus: \(error)\n")
            throw ExitCode(error.exitCode)
        }
        await connection.close()
    }
}
