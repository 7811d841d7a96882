import Logging
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Pauses accepting for a moment when `accept` fails for want of descriptors or memory (EMFILE, ENFILE, ENOBUFS,
/// ENOMEM), instead of retrying at full speed.
///
/// The failed connection stays queued in the kernel, so the listening socket stays readable; NIO's own
/// `AcceptBackoffHandler` holds back `read` calls, but after an accept that failed on its first try the channel keeps
/// its read interest and its loop spins on `accept4` (measured: 15,000 failed calls a second, a whole core). Switching
/// the server channel's automatic reads off drops the read interest; they come back on after a pause of `backoff`,
/// which grows while accepts keep failing and starts afresh after one succeeds.
package final class AcceptPauseHandler: ChannelInboundHandler {
    package typealias InboundIn = any Channel

    private let backoff: Backoff
    private let logger: Logger
    private var paused = false
    /// Pauses in a row without an accept that succeeded.
    private var failures = 0
    private var lastWarning: NIODeadline?

    /// Creates a handler that pauses according to `backoff` after failed accepts.
    package init(backoff: Backoff, logger: Logger) {
        self.backoff = backoff
        self.logger = logger
    }

    /// Creates a handler that waits `pause` after each failed accept.
    package convenience init(pause: TimeAmount, logger: Logger) {
        self.init(backoff: .constant(.nanoseconds(pause.nanoseconds)), logger: logger)
    }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        failures = 0
        context.fireChannelRead(data)
    }

    package func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let ioError = error as? IOError, [EMFILE, ENFILE, ENOBUFS, ENOMEM].contains(ioError.errnoCode) else {
            context.fireErrorCaught(error)
            return
        }
        guard !paused else { return }
        let pause = backoff.delay(attempt: failures)
        failures += 1
        let now = NIODeadline.now()
        if lastWarning.map({ now - $0 >= .seconds(10) }) ?? true {
            lastWarning = now
            logger.warning("cannot accept connections: out of descriptors or memory; accepting pauses and retries", metadata: [
                "error": "\(ioError)", "retry_ms": "\(pause.timeAmount.nanoseconds / 1_000_000)",
            ])
        }
        paused = true
        let channel = context.channel
        try? channel.syncOptions?.setOption(ChannelOptions.autoRead, value: false)
        context.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(in: pause.timeAmount) {
            self.paused = false
            guard channel.isActive else { return }
            try? channel.syncOptions?.setOption(ChannelOptions.autoRead, value: true)
        }
    }
}
