import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ServiceLifecycle
import ZbusTLS

/// Why a node could not start.
public enum NodeError: Error, Sendable, CustomStringConvertible {
    /// The listen address could not be bound.
    case bindFailed(address: HostAndPort, reason: String)
    /// The TLS port (`node.tls.listen`) could not be bound.
    case tlsBindFailed(address: HostAndPort, reason: String)
    /// A file of `node.tls` is missing or bad.
    case tlsFiles(TLSFileError)
    /// A module failed to start.
    case moduleStartFailed(module: String, reason: String)
    /// A module's service (its ``PluginModule/run()``) failed while the node ran; the node stops.
    case moduleFailed(module: String, reason: String)
    /// `start()` was called on a node that is running or stopped.
    case notStartable(String)

    public var description: String {
        switch self {
        case .bindFailed(let address, let reason):
            return "cannot listen on \(address): \(reason) (choose another `node.listen` or pass --listen HOST:PORT)"
        case .tlsBindFailed(let address, let reason):
            return "cannot listen in TLS on \(address): \(reason) (choose another `node.tls.listen`)"
        case .tlsFiles(let error):
            return "node.tls: \(error)"
        case .moduleStartFailed(let module, let reason):
            return "module '\(module)' failed to start: \(reason)"
        case .moduleFailed(let module, let reason):
            return "module '\(module)' failed while the node ran, so the node stopped: \(reason)"
        case .notStartable(let state):
            return "the node cannot be started: it is \(state)"
        }
    }
}

/// A zbus node: a listening port (plain, TLS or both), the kernel's built-in commands, and the modules its configuration names.
///
/// The modules start in dependency order before the node accepts connections; then their services
/// (``PluginModule/run()``) run in a `ServiceGroup` that the node owns until ``shutdown()``, which shuts them down
/// gracefully in reverse order before stopping the modules.
///
/// ```swift
/// let node = try Node(config: config, registry: .standard)
/// let address = try await node.start()   // or `try await node.run()` until SIGINT/SIGTERM under a ServiceGroup
/// ...
/// await node.shutdown()
/// ```
public final class Node: Service, Sendable {
    /// The configuration the node runs with.
    public let config: NodeConfig
    /// The open client sessions.
    public let sessions = SessionRegistry()

    /// In start order: each after the modules it depends on.
    private let modules: [any PluginModule]
    private let contributions: ModuleContributions
    private let logger: Logger
    private let state = NIOLockedValueBox(State.idle)

    private enum State {
        case idle
        case starting
        case running(Running)
        case stopping([CheckedContinuation<Void, Never>])
        case stopped
    }

    private struct Running {
        let group: MultiThreadedEventLoopGroup
        /// The plain port's channel and the TLS port's, whichever are configured.
        let serverChannels: [any Channel]
        let address: HostAndPort
        let tlsAddress: HostAndPort?
        let certificates: TLSCertificateStore?
        let dispatcher: CommandDispatcher
        let hooks: ConnectionHooks
        /// Runs the modules' services.
        let moduleServices: ServiceGroup
        /// The one task that runs `moduleServices`, from start to ``Node/shutdown()``, which awaits it; it returns the
        /// error of a module that failed.
        let moduleRunner: Task<NodeError?, Never>
    }

    /// Builds a node and its modules; nothing is bound or started yet.
    ///
    /// - Throws: ``ConfigError`` when a module is unknown to `registry`, rejects its section, conflicts with another
    ///   module's contributions, or needs a module the configuration does not load.
    public init(config: NodeConfig, registry: PluginRegistry, logger: Logger? = nil) throws(ConfigError) {
        var logger = logger ?? Logger(label: "zbus")
        logger.logLevel = config.logLevel
        logger[metadataKey: "node"] = "\(config.name)"
        self.config = config
        self.logger = logger
        let loaded = try registry.loadModules(for: config, logger: logger)
        self.modules = loaded.modules
        self.contributions = loaded.contributions
    }

    /// The names of the loaded modules, in start order (each after the modules it depends on).
    public var moduleNames: [String] { modules.map { type(of: $0).name } }

    /// The bound address once started (useful with port 0): the plain port's, or the TLS port's when the node
    /// listens in TLS only.
    public var localAddress: HostAndPort? {
        state.withLockedValue { state in
            if case .running(let running) = state { return running.address }
            return nil
        }
    }

    /// The TLS port's bound address once started, when `node.tls` is configured.
    public var tlsAddress: HostAndPort? {
        state.withLockedValue { state in
            if case .running(let running) = state { return running.tlsAddress }
            return nil
        }
    }

    /// Reads the TLS certificate, key and CA files again (as on SIGHUP): connections accepted from now on use them,
    /// open connections keep theirs. A bad file is logged and the certificate in use stays.
    ///
    /// The modules reload their own TLS files too (``PluginModule/reloadTLS()``, for example the `rpc` module's direct
    /// ports), each logging its outcome; a port that shares the node's certificate follows it.
    ///
    /// - Returns: `false` when the node has no TLS port or is not running.
    /// - Throws: ``TLSFileError`` naming the bad file of the node's TLS port.
    @discardableResult
    public func reloadTLS() throws(TLSFileError) -> Bool {
        let running = state.withLockedValue { state -> Running? in
            if case .running(let running) = state { return running }
            return nil
        }
        guard let running else { return false }
        for module in modules { module.reloadTLS() }
        guard let store = running.certificates else { return false }
        try store.reload()
        return true
    }

    /// Whether a reload (SIGHUP: ``reloadTLS()``, ``reloadAuth(file:)``) has anything to read again: the node's TLS
    /// port, an `auth` section, or a module's TLS files (``PluginModule/hasOwnTLSFiles``).
    public var hasReloadableFiles: Bool {
        config.tls != nil || config.auth != nil || modules.contains { $0.hasOwnTLSFiles }
    }

    /// Reads the `auth` section of the node file again (SIGHUP) and, if it is good, swaps the access policy for it
    /// atomically: requests decided from then on, on new and open connections, use the new tokens and grants
    /// (``AccessPolicy/adopt(_:)``); a request already decided is not undone, and a consumer already parked waits on.
    ///
    /// Only `auth` (with the `secret_file`s and `report_token_file` it names) is reloaded; the node, its ports, limits
    /// and modules keep what they started with. Adding an `auth` section to a node that started without one, or
    /// removing it, takes a restart. Whatever goes wrong is logged (file, line, key) and the policy in use stays: the
    /// node is never left without one.
    ///
    /// - Parameter file: the node file; by default the one the node was loaded from (``NodeConfig/source``).
    /// - Returns: `true` when a new policy is in force; `false` when the node runs without access control and the
    ///   file still has no `auth` section (nothing to do).
    /// - Throws: ``ConfigError`` for a bad section or file, or an `auth` section added or removed.
    @discardableResult
    public func reloadAuth(file: String? = nil) throws(ConfigError) -> Bool {
        let path = file ?? config.source
        do throws(ConfigError) {
            let loaded = try NodeConfig.loadAuth(file: path)
            guard let live = config.auth else {
                guard let loaded else { return false }
                throw loaded.section.keyError(
                    "the node started without access control; adding an `auth` section takes a restart (the node goes on without one)")
            }
            guard let loaded else {
                throw ConfigError(file: path, keyPath: "auth", message:
                    "the section is gone; removing access control takes a restart (the policy in use stays)")
            }
            live.adopt(loaded.policy)
            // Names only: a secret never reaches a log.
            logger.notice("access policy reloaded", metadata: [
                "file": "\(path)", "tokens": "\(live.tokenNames.joined(separator: ","))",
                "anonymous": "\(live.anonymous.isEmpty ? "nothing" : "some")", "metrics_open": "\(live.metricsOpen)",
            ])
            return true
        } catch {
            logger.error("auth reload failed; keeping the access policy in use", metadata: ["error": "\(error)"])
            throw error
        }
    }

    /// What an in-process connection needs from the running node (see `Node+InProcess.swift`), or `nil` when the
    /// node is not running.
    var inProcessEndpoints: InProcessEndpoints? {
        state.withLockedValue { state in
            guard case .running(let running) = state else { return nil }
            return InProcessEndpoints(eventLoopGroup: running.group, dispatcher: running.dispatcher, hooks: running.hooks)
        }
    }

    /// Binds the listen address, starts the modules in dependency order, starts accepting connections, then runs the
    /// modules' services until ``shutdown()``.
    ///
    /// - Returns: the bound address.
    /// - Throws: ``NodeError`` when binding or a module's start fails (everything started so far is stopped again).
    @discardableResult
    public func start() async throws -> HostAndPort {
        try state.withLockedValue { state in
            guard case .idle = state else { throw NodeError.notStartable("\(state)") }
            state = .starting
        }
        let threads = config.threads > 0 ? config.threads : System.coreCount
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        let dispatcherBox = NIOLockedValueBox<CommandDispatcher?>(nil)
        let limits = config.limits
        let sessions = self.sessions
        let modules = self.modules
        let governor = ConnectionGovernor(limits: config.connectionLimits)
        let hooks = ConnectionHooks(
            logger: logger,
            governor: governor,
            sessionOpened: { sessions.add($0) },
            sessionClosed: { session in
                sessions.remove(session)
                for module in modules { module.sessionDidClose(session) }
            }
        )
        let certificates: TLSCertificateStore?
        do throws(TLSFileError) {
            // The handshake must end within `header_timeout`: until it does, the connection guard sees no bytes of a
            // header block, and a peer that stalls its handshake would hold its slot for the whole idle timeout.
            let handshakeTimeout = config.connectionLimits.headerTimeoutMilliseconds
            certificates = try config.tls.map { tls throws(TLSFileError) in
                try TLSCertificateStore(files: tls.files, handshakeTimeoutMilliseconds: handshakeTimeout, logger: self.logger)
            }
        } catch {
            try? await group.shutdownGracefully()
            state.withLockedValue { $0 = .idle }
            throw NodeError.tlsFiles(error)
        }
        // Both ports share the whole connection pipeline (limits, connection guard, sessions, HTTP paths); the TLS
        // port puts the TLS handler first.
        let configureConnection: @Sendable (any Channel) throws -> Void = { channel in
            guard let dispatcher = dispatcherBox.withLockedValue({ $0 }) else { throw ChannelError.ioOnClosedChannel }
            try ConnectionHandler.configure(channel, limits: limits, dispatcher: dispatcher, hooks: hooks)
        }
        var serverChannels: [any Channel] = []
        var plainChannel: (any Channel)?
        if config.listensPlain {
            do {
                let channel = try await Self.bindPort(config.listen, group: group, certificates: nil, logger: logger,
                                                      configure: configureConnection)
                serverChannels.append(channel)
                plainChannel = channel
            } catch {
                try? await group.shutdownGracefully()
                state.withLockedValue { $0 = .idle }
                throw NodeError.bindFailed(address: config.listen, reason: ErrorText.describe(error))
            }
        }
        var tlsAddress: HostAndPort?
        if let tls = config.tls, let certificates {
            do {
                let channel = try await Self.bindPort(tls.listen, group: group, certificates: certificates, logger: logger,
                                                      configure: configureConnection)
                serverChannels.append(channel)
                tlsAddress = HostAndPort(host: tls.listen.host, port: channel.localAddress?.port ?? tls.listen.port)
            } catch {
                for channel in serverChannels { try? await channel.close() }
                try? await group.shutdownGracefully()
                state.withLockedValue { $0 = .idle }
                throw NodeError.tlsBindFailed(address: tls.listen, reason: ErrorText.describe(error))
            }
        }
        guard !serverChannels.isEmpty else {
            try? await group.shutdownGracefully()
            state.withLockedValue { $0 = .idle }
            throw NodeError.notStartable("configured with `node.listen: none` and no `node.tls`, so without a port")
        }

        let address: HostAndPort
        if let plainChannel {
            address = HostAndPort(host: config.listen.host, port: plainChannel.localAddress?.port ?? config.listen.port)
        } else {
            address = tlsAddress ?? config.listen
        }
        let advertised = config.advertise ?? Self.advertisedAddress(for: address)
        // The dispatcher answers built-in commands itself; their entries only keep modules from claiming them.
        let handlers = contributions.values(of: .commands).filter { !($0.value is BuiltInCommandHandler) }
        let dispatcher = CommandDispatcher(handlers: handlers, defaultRoute: contributions.value(of: .defaultRoute),
                                           pathHandlers: contributions.values(of: .httpPaths),
                                           serverAddress: advertised, logger: logger, accessPolicy: config.auth)
        dispatcherBox.withLockedValue { $0 = dispatcher }
        let context = NodeContext(
            node: self, config: config, serverAddress: advertised, eventLoopGroup: group, sessions: sessions, logger: logger,
            contributions: contributions, moduleNames: moduleNames, tlsCertificates: certificates)

        var started: [any PluginModule] = []
        for module in modules {
            do {
                try await module.start(context)
                started.append(module)
            } catch {
                for module in started.reversed() { await module.shutdown() }
                for channel in serverChannels { try? await channel.close() }
                try? await group.shutdownGracefully()
                state.withLockedValue { $0 = .idle }
                throw NodeError.moduleStartFailed(module: type(of: module).name, reason: ErrorText.describe(error))
            }
        }
        // Graceful shutdown reaches the services in reverse order: a module stops before the modules it needs, and
        // tracker reporting (last) says goodbye before any module stops.
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = modules.map { module in
            .init(service: ModuleService(module: module), successTerminationBehavior: .ignore,
                  failureTerminationBehavior: .gracefullyShutdownGroup, serviceName: type(of: module).name)
        }
        if !config.trackers.isEmpty {
            let reporter = TrackerReporter(
                trackers: config.trackers, server: advertised,
                sources: contributions.values(of: .trackedEntries).sorted { $0.key < $1.key }.map(\.value),
                group: group, limits: limits, tls: config.tls?.client, logger: logger, token: { [auth = config.auth] in auth?.reportToken })
            services.append(.init(service: reporter, successTerminationBehavior: .ignore,
                                  failureTerminationBehavior: .gracefullyShutdownGroup, serviceName: "tracker reporting"))
        }
        let moduleServices = ServiceGroup(configuration: ServiceGroupConfiguration(services: services, logger: logger))
        for channel in serverChannels { try await channel.setOption(.autoRead, value: true).get() }
        let logger = self.logger
        let boundChannels = serverChannels
        state.withLockedValue {
            // The services outlive `start()`, so they need a task of their own; the node keeps it and `shutdown()`
            // awaits it. It is created under the lock so that its modules find the node running (in-process
            // connections need that).
            let moduleRunner = Task<NodeError?, Never> {
                do {
                    try await moduleServices.run()
                    return nil
                } catch {
                    let failure = error as? NodeError ?? .moduleFailed(module: "?", reason: "\(error)")
                    logger.error("\(failure)")
                    // No longer accepting ends `run()`, which then shuts the node down and throws the failure.
                    for channel in boundChannels { channel.close(promise: nil) }
                    return failure
                }
            }
            $0 = .running(Running(group: group, serverChannels: boundChannels, address: address, tlsAddress: tlsAddress,
                                  certificates: certificates, dispatcher: dispatcher, hooks: hooks,
                                  moduleServices: moduleServices, moduleRunner: moduleRunner))
        }
        var metadata: Logger.Metadata = ["modules": "\(moduleNames.joined(separator: ","))"]
        if plainChannel != nil { metadata["address"] = "\(address)" }
        if let tlsAddress, let certificates {
            metadata["tls_address"] = "\(tlsAddress)"
            metadata["certificate"] = "\(certificates.summary)"
            metadata["client_certificates"] = "\(certificates.files.clientCAFile == nil ? "not required" : "required")"
        }
        logger.info("node listening", metadata: metadata)
        if let auth = config.auth {
            // Names only: a secret never reaches a log.
            logger.info("access control on", metadata: [
                "tokens": "\(auth.tokenNames.joined(separator: ","))", "anonymous": "\(auth.anonymous.isEmpty ? "nothing" : "some")",
                "metrics_open": "\(auth.metricsOpen)",
            ])
        } else {
            // Either port counts: TLS encrypts the traffic, it does not say who may do what.
            let exposed = ((plainChannel != nil ? [address] : []) + (tlsAddress.map { [$0] } ?? [])).filter { !Self.isLoopback($0.host) }
            for open in exposed {
                logger.warning("""
                    NO ACCESS CONTROL: the node listens on \(open), beyond loopback, with no `auth` section; anyone who \
                    reaches the port may produce, consume, route, create and remove MQs. Add an `auth` section or listen on \
                    127.0.0.1 (see docs/security.md).
                    """)
            }
        }
        return address
    }

    /// Whether `host` is a loopback address (`127.0.0.0/8`, `::1`, `localhost`), on which no other machine reaches us.
    static func isLoopback(_ host: String) -> Bool {
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        return bare.hasPrefix("127.") || bare == "::1" || bare == "localhost" || bare == "0:0:0:0:0:0:0:1"
    }

    /// Runs the node until ``shutdown()`` is called or, under a `ServiceGroup`, until graceful shutdown (SIGINT or
    /// SIGTERM), then stops it.
    ///
    /// - Throws: ``NodeError`` when the node cannot start, or ``NodeError/moduleFailed(module:reason:)`` when a module's
    ///   service failed (the node is stopped by then).
    public func run() async throws {
        if case .idle = state.withLockedValue({ $0 }) { try await start() }
        guard case .running(let running) = state.withLockedValue({ $0 }) else { return }
        await withGracefulShutdownHandler {
            // The first port closing ends the run (a failed module closes every port).
            try? await running.serverChannels[0].closeFuture.get()
        } onGracefulShutdown: {
            for channel in running.serverChannels { channel.close(promise: nil) }
        }
        await shutdown()
        if let failure = await running.moduleRunner.value { throw failure }
    }

    /// Stops the node: stops accepting, stops the modules (which finish their work and close their stores), closes
    /// every connection after what was already written, and releases the event loops. Safe to call more than once.
    public func shutdown() async {
        let running: Running? = await withCheckedContinuation { (continuation: CheckedContinuation<Running?, Never>) in
            state.withLockedValue { state in
                switch state {
                case .running(let running):
                    state = .stopping([])
                    continuation.resume(returning: running)
                case .stopping:
                    continuation.resume(returning: nil)
                case .idle, .starting, .stopped:
                    state = .stopped
                    continuation.resume(returning: nil)
                }
            }
        }
        guard let running else {
            // Someone else is stopping the node: wait for them.
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                state.withLockedValue { state in
                    if case .stopping(var waiters) = state {
                        waiters.append(continuation)
                        state = .stopping(waiters)
                    } else {
                        continuation.resume()
                    }
                }
            }
            return
        }
        logger.info("node stopping")
        for channel in running.serverChannels { try? await channel.close() }
        await running.moduleServices.triggerGracefulShutdown()
        _ = await running.moduleRunner.value
        for module in modules.reversed() { await module.shutdown() }
        for session in sessions.all { session.close() }
        try? await running.group.shutdownGracefully()
        let waiters = state.withLockedValue { state -> [CheckedContinuation<Void, Never>] in
            defer { state = .stopped }
            if case .stopping(let waiters) = state { return waiters }
            return []
        }
        for waiter in waiters { waiter.resume() }
        logger.info("node stopped")
    }

    /// Binds one port, not yet accepting (`autoRead` off until the modules have started). Every accepted connection
    /// gets the TLS handler first when `certificates` is given, then `configure` adds the connection pipeline.
    private static func bindPort(_ address: HostAndPort, group: MultiThreadedEventLoopGroup, certificates: TLSCertificateStore?,
                                 logger: Logger, configure: @escaping @Sendable (any Channel) throws -> Void) async throws -> any Channel {
        try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // Connections wait in the backlog until the modules have started.
            .serverChannelOption(.autoRead, value: false)
            // Out of descriptors (EMFILE/ENFILE), `accept` fails at once while the connection stays queued, so
            // without a pause the loop would retry at full speed.
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(AcceptPauseHandler(pause: .milliseconds(100), logger: logger))
                }
            }
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try certificates?.addHandler(to: channel)
                    try configure(channel)
                }
            }
            .bind(host: address.host, port: address.port)
            .get()
    }

    /// The address to stamp as `server`: the bound one, or the first local IPv4 address when bound to the wildcard.
    private static func advertisedAddress(for address: HostAndPort) -> String {
        guard address.host == "0.0.0.0" || address.host == "::" else { return address.description }
        let interfaces = (try? System.enumerateDevices()) ?? []
        for device in interfaces {
            if let ip = device.address?.ipAddress, device.address?.protocol == .inet, ip != "127.0.0.1" {
                return "\(ip):\(address.port)"
            }
        }
        return "127.0.0.1:\(address.port)"
    }
}

/// A module as a service of the node's `ServiceGroup`: its failure names it.
private struct ModuleService: Service {
    let module: any PluginModule

    func run() async throws {
        do {
            try await module.run()
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw NodeError.moduleFailed(module: type(of: module).name, reason: "\(error)")
        }
    }
}
