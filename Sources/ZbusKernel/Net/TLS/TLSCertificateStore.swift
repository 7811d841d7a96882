import Logging
import NIOConcurrencyHelpers
import NIOCore
import ZbusTLS

/// A TLS port's current server context, swapped whole by a reload (SIGHUP): each new connection takes the context
/// current when it is accepted, and connections already open keep the one they were made with.
///
/// The node keeps one for its TLS port (``NodeContext/tlsCertificates``, which a module may share for a port of its
/// own, as the `rpc` module's `direct_tls: true` does); a module with files of its own keeps its own store and reloads
/// it from ``PluginModule/reloadTLS()``.
public final class TLSCertificateStore: Sendable {
    /// The certificate, key and client CA files, read again by each ``reload()``.
    public let files: ServerTLSFiles
    private let current: NIOLockedValueBox<ServerTLSContext>
    private let logger: Logger
    /// How long a connection may take to complete its handshake (`node.limits.header_timeout`; 0: no limit).
    private let handshakeTimeoutMilliseconds: Int

    /// Reads the files.
    ///
    /// - Parameters:
    ///   - files: the certificate, key and CA files.
    ///   - handshakeTimeoutMilliseconds: a connection whose handshake has not completed this long after it was
    ///     accepted is closed (0: no limit).
    ///   - logger: where reloads and failed handshakes are logged.
    /// - Throws: ``TLSFileError`` naming the file that is wrong.
    public init(files: ServerTLSFiles, handshakeTimeoutMilliseconds: Int, logger: Logger) throws(TLSFileError) {
        self.files = files
        self.logger = logger
        self.handshakeTimeoutMilliseconds = handshakeTimeoutMilliseconds
        let context = try files.makeContext()
        self.current = NIOLockedValueBox(context)
    }

    /// What may be logged about the certificate in use: serial and names, never key material.
    public var summary: String { current.withLockedValue { $0.summary } }

    /// Adds the TLS handler, with the current context, and the handshake's deadline to an accepted connection (call it
    /// from the child channel initializer, on the channel's loop).
    public func addHandler(to channel: any Channel) throws {
        let context = current.withLockedValue { $0 }
        try channel.pipeline.syncOperations.addHandler(context.makeHandler())
        try channel.pipeline.syncOperations.addHandler(TLSHandshakeLogger(timeoutMilliseconds: handshakeTimeoutMilliseconds, logger: logger))
    }

    /// Reads the files again and, if they are good, uses them for the connections accepted from now on; if not, logs
    /// why and keeps the certificate in use.
    ///
    /// - Throws: ``TLSFileError`` when a file is bad (the old certificate stays).
    public func reload() throws(TLSFileError) {
        let context: ServerTLSContext
        do throws(TLSFileError) {
            context = try files.makeContext()
        } catch {
            logger.error("TLS reload failed; keeping the certificate in use", metadata: [
                "error": "\(error)", "certificate": "\(summary)",
            ])
            throw error
        }
        current.withLockedValue { $0 = context }
        logger.notice("TLS certificate reloaded", metadata: ["certificate": "\(context.summary)"])
    }
}
