import Logging
import NIOCore
import NIOTLS

/// Logs why a TLS handshake failed (an untrusted or missing client certificate, a plaintext client, an old protocol
/// version), once per connection and with the peer's address, so that an operator setting up client certificates sees
/// what the node refused. It leaves the pipeline once the handshake completes, so established connections do not pass
/// through it.
final class TLSHandshakeLogger: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    private let logger: Logger
    private var logged = false

    init(logger: Logger) { self.logger = logger }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted = event {
            context.fireUserInboundEventTriggered(event)
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if !logged {
            logged = true
            // The error names the TLS alert or BoringSSL reason; it never carries key material.
            logger.info("TLS handshake failed", metadata: [
                "remote": "\(context.channel.remoteAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "unknown")",
                "error": "\(error)",
            ])
        }
        context.fireErrorCaught(error)
    }
}
