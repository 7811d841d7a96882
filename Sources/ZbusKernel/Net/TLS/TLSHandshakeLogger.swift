import Logging
import NIOCore
import NIOTLS

/// Logs why a TLS handshake failed (an untrusted or missing client certificate, a plaintext client, an old protocol
/// version), once per connection and with the peer's address, so that an operator setting up client certificates sees
/// what the node refused. It leaves the pipeline once the handshake completes, so established connections do not pass
/// through it.
///
/// It also closes a connection whose handshake has not completed within the header timeout of its acceptance: until
/// the handshake ends, the connection pipeline behind it sees no byte, so its header timeout cannot start, and a peer
/// that connects and stalls its handshake (or trickles it) would hold a connection slot for the whole idle timeout.
package final class TLSHandshakeLogger: ChannelInboundHandler, RemovableChannelHandler {
    package typealias InboundIn = NIOAny

    private let logger: Logger
    private let timeoutMilliseconds: Int
    private var logged = false
    private var deadline: Scheduled<Void>?

    /// - Parameters:
    ///   - timeoutMilliseconds: how long the handshake may take from the connection's acceptance (0: no limit).
    ///   - logger: where failed handshakes are logged.
    package init(timeoutMilliseconds: Int, logger: Logger) {
        self.timeoutMilliseconds = timeoutMilliseconds
        self.logger = logger
    }

    package func handlerAdded(context: ChannelHandlerContext) {
        guard timeoutMilliseconds > 0 else { return }
        let timeout = timeoutMilliseconds
        let logger = self.logger
        let channel = context.channel
        deadline = context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(Int64(timeout))) {
            logger.info("TLS handshake not completed in time; closing", metadata: [
                "remote": "\(Self.describe(channel.remoteAddress))",
                "limit": "\(timeout) ms (node.limits.header_timeout)",
            ])
            channel.close(promise: nil)
        }
    }

    package func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
    }

    package func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
        context.fireChannelInactive()
    }

    package func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted = event {
            deadline?.cancel()
            deadline = nil
            context.fireUserInboundEventTriggered(event)
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    package func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if !logged {
            logged = true
            // The error names the TLS alert or BoringSSL reason; it never carries key material.
            logger.info("TLS handshake failed", metadata: [
                "remote": "\(Self.describe(context.channel.remoteAddress))",
                "error": "\(error)",
            ])
        }
        context.fireErrorCaught(error)
    }

    private static func describe(_ address: SocketAddress?) -> String {
        address.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "unknown"
    }
}
