import NIOCore
import ZbusKernel

/// Why a call to a legacy service failed, as the proxy runtime reports it to the caller.
///
/// Each case becomes the routed reply's status (``status``) and body (``description``), so a caller learns which
/// service failed, where it was, and what to check.
public enum ProxyError: Error, Sendable, CustomStringConvertible {
    /// The service could not be reached (connection refused, reset, no route).
    case serviceDown(service: String, address: String, reason: String)
    /// The service did not answer within the adapter's timeout.
    case timedOut(service: String, address: String, after: Duration)
    /// The service answered something the adapter cannot read (wrong protocol, wrong framing, oversized record).
    case badReply(service: String, address: String, reason: String)
    /// Every one of the adapter's `max_in_flight` calls to the service stayed busy while this request waited for one,
    /// until its `queue_timeout` (`after`: the whole wait since the MQ accepted it, for a worker and then for a slot)
    /// was up, so it was never sent: the service is slower than the load it gets.
    case saturated(service: String, address: String, limit: Int, after: Duration)
    /// The caller's message cannot be turned into a legacy request (for example a newline inside a newline-framed
    /// record).
    case badRequest(service: String, reason: String)
    /// The service closed a kept connection after the request was written to it, before any byte of a reply, and the
    /// request was not sent again because doing it twice may not be safe (`why`: "POST is not idempotent").
    case closedAfterRequest(service: String, address: String, why: String)
    /// The request waited `waited` in MQ `mq` for a free worker, past the adapter's `queue_timeout` (`limit`), so it
    /// was not sent: its caller has waited long enough, and the service is slower than the load it gets.
    case expiredInQueue(service: String, mq: String, waited: Duration, limit: Duration)

    /// The reply status: 502 down, garbage or closed after the request, 504 timeout (of the call, or of the wait in
    /// the MQ), 503 saturated, 400 bad request.
    public var status: Int {
        switch self {
        case .serviceDown, .badReply, .closedAfterRequest: return 502
        case .timedOut, .expiredInQueue: return 504
        case .saturated: return 503
        case .badRequest: return 400
        }
    }

    /// Which failure, in a word or two, whatever the details: how the log tells repeats apart (``CallFailureLog``).
    public var kind: String {
        switch self {
        case .serviceDown: "service down"
        case .timedOut: "timed out"
        case .badReply: "bad reply"
        case .saturated: "saturated"
        case .badRequest: "bad request"
        case .closedAfterRequest: "closed after request"
        case .expiredInQueue: "expired in queue"
        }
    }

    /// What went wrong and what to check.
    public var description: String {
        switch self {
        case .serviceDown(let service, let address, let reason):
            return "legacy service '\(service)' at \(address) is down: \(reason); check that it runs and listens there"
        case .timedOut(let service, let address, let after):
            return "legacy service '\(service)' at \(address) did not answer within \(after.proxyDescription); it is slow or stuck (raise `timeout` if that is normal)"
        case .saturated(let service, let address, let limit, let after):
            return "legacy service '\(service)' at \(address) is saturated: its max_in_flight (\(limit)) calls stayed busy for \(after.proxyDescription), so this request was not sent; the service is slower than its load (raise max_in_flight if it can take more calls at once)"
        case .badReply(let service, let address, let reason):
            return "legacy service '\(service)' at \(address) answered garbage: \(reason); check the adapter's kind and framing"
        case .badRequest(let service, let reason):
            return "request for legacy service '\(service)' cannot be sent: \(reason)"
        case .closedAfterRequest(let service, let address, let why):
            return "legacy service '\(service)' at \(address) closed the connection after the request was sent, before any reply; the request was not repeated (\(why)), so the service may or may not have acted on it"
        case .expiredInQueue(let service, let mq, let waited, let limit):
            return "request for legacy service '\(service)' waited \(waited.proxyDescription) in MQ '\(mq)' for a free worker, past the adapter's queue_timeout (\(limit.proxyDescription)), and was not sent; the service is slower than its load (raise workers and max_in_flight if it can take more calls at once)"
        }
    }

    /// The message routed back to the caller.
    public var reply: Message {
        var message = Message(status: status)
        message.setBody(description)
        message.contentType = "text/plain; charset=utf-8"
        return message
    }
}

extension Duration {
    /// `250 ms`, `3 s`: how the proxy names timeouts in its messages.
    var proxyDescription: String {
        let millis = components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
        return millis % 1000 == 0 ? "\(millis / 1000) s" : "\(millis) ms"
    }
}

extension Duration {
    /// The same span as NIO's `TimeAmount`.
    var nioTimeAmount: TimeAmount {
        .nanoseconds(components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000)
    }
}
