import NIOCore
import ZbusKernel

/// Turns request messages into response messages: a processor and the codecs it speaks.
///
/// This is the whole service logic that the MQ-RPC service and the direct RPC server share, usable on its own for any
/// other transport:
///
/// ```swift
/// let responder = RpcResponder(processor: processor)          // JSON, and raw for application/octet-stream
/// let reply = await responder.respond(to: requestMessage)     // 200 or 500, the codec's body
/// ```
public struct RpcResponder: Sendable {
    /// The methods.
    public let processor: RpcProcessor
    /// The codecs: the default one, and others selected by `content-type`.
    public let codecs: RpcCodecSet

    /// Told of every call answered (for metrics), if set.
    public let observer: (any RpcCallObserver)?

    /// Creates a responder.
    ///
    /// - Parameters:
    ///   - processor: the methods.
    ///   - codecs: the codecs.
    ///   - observer: told of every call once it is answered, with how long it took (the `rpc` module records metrics).
    public init(processor: RpcProcessor, codecs: RpcCodecSet = .standard, observer: (any RpcCallObserver)? = nil) {
        self.processor = processor
        self.codecs = codecs
        self.observer = observer
    }

    /// The response message to `message` (its codec chosen by `content-type`); failures are 500 responses.
    public nonisolated(nonsending) func respond(to message: Message) async -> Message {
        switch answer(message) {
        case .ready(let reply): return reply
        case .later(let reply): return await reply()
        }
    }

    /// An answer known now, or one that needs an `async` method to run first.
    package enum Answer {
        case ready(Message)
        case later(@Sendable () async -> Message)
    }

    /// Answers `message`, running a synchronous method on the calling thread, and tells the observer.
    package func answer(_ message: Message) -> Answer {
        guard let observer else { return answerUnobserved(message) }
        let start = ContinuousClock.now
        switch answerUnobserved(message) {
        case .ready(let reply):
            observer.callAnswered(status: reply.status ?? 200, after: ContinuousClock.now - start)
            return .ready(reply)
        case .later(let reply):
            return .later {
                let answered = await reply()
                observer.callAnswered(status: answered.status ?? 200, after: ContinuousClock.now - start)
                return answered
            }
        }
    }

    /// The failure response to `message` for a request not run: `reason` as the error, in the codec the request
    /// chose (by `content-type`), as a method's failure would be. The observer is told of it as expired.
    package func refusal(of message: Message, reason: String) -> Message {
        observer?.callExpired()
        return codecs.codec(for: message).encodeResponse(.failure(reason))
    }

    private func answerUnobserved(_ message: Message) -> Answer {
        let codec = codecs.codec(for: message)
        let request: RpcRequest
        do {
            request = try codec.decodeRequest(message)
        } catch {
            return .ready(codec.encodeResponse(.failure(RpcServiceError.badRequest("\(error)"))))
        }
        switch processor.resolve(request) {
        case .ready(let response):
            return .ready(codec.encodeResponse(response))
        case .call(let method, let arguments):
            let encoding = request.encoding
            return .later {
                var response = await method.call(arguments)
                response.encoding = encoding
                return codec.encodeResponse(response)
            }
        }
    }
}

/// Hears of every RPC call a ``RpcResponder`` answers: for metrics (the `rpc` module counts calls, errors and their
/// latency).
public protocol RpcCallObserver: Sendable {
    /// A call was answered with `status` (200, or 500 for any failure) after `duration`.
    func callAnswered(status: Int, after duration: Duration)
    /// A request was answered with an error without being run: it waited in its MQ past the service's
    /// `queue_timeout`. (Not also counted by ``callAnswered(status:after:)``.)
    func callExpired()
}

extension RpcCallObserver {
    /// Does nothing: an observer that does not count expired requests apart.
    public func callExpired() {}
}
