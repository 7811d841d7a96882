import NIOCore

extension Duration {
    /// The duration as a NIO `TimeAmount` (whole nanoseconds), for scheduling on an event loop.
    package var timeAmount: TimeAmount {
        let (seconds, attoseconds) = components
        return .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
