import Logging
import NIOCore
import ZbusInProcess
import ZbusKernel
import ZbusRPC

/// One MQ-RPC worker of a service on this node's own MQ, run on one of the node's event loops (``LoopConsumer``): a
/// synchronous method is answered in the callback that delivers the request, and its answer is routed and the next
/// consume dispatched in the same turn of the loop, with no task, thread hop or message copy through a client.
///
/// The cycle and its guarantees are ``MqRpcWorker``'s (its TCP counterpart, for services on another node): the
/// consume after an answer acknowledges the request; an `async` method runs as a task and the loop routes its answer
/// when it is done; ``stop()`` finishes the request in hand, acknowledges it and closes.
final class LoopRpcWorker: Sendable {
    private let consumer: LoopConsumer
    private let responder: RpcResponder

    /// Opens the worker's session on `node`, on the loop the node picks.
    init(node: Node, mq: String, responder: RpcResponder, options: LoopConsumer.Options, logger: Logger) throws(InProcessConnectionError) {
        consumer = try LoopConsumer(node: node, mq: mq, options: options, logger: logger)
        self.responder = responder
    }

    /// Starts consuming.
    func start() {
        let consumer = self.consumer
        let responder = self.responder
        consumer.start { request in
            switch responder.answer(request) {
            case .ready(let reply):
                consumer.finish(reply, routing: request)
            case .later(let makeReply):
                let eventLoop = consumer.eventLoop
                Task {
                    let reply = await makeReply()
                    eventLoop.execute { consumer.finish(reply, routing: request) }
                }
            }
        }
    }

    /// Finishes the request in hand (answered and acknowledged), then closes.
    func stop() async {
        try? await consumer.stop().get()
    }
}
