import NIOCore
import ZbusKernel
import ZbusProxy

/// The `tcp` adapter kind: one message body is one record to a legacy framed TCP service, and its one reply record is
/// the reply's body.
///
/// ```yaml
/// - { name: ledger, kind: tcp, mq: Ledger, target: 127.0.0.1:9000, framing: length4 }
/// - { name: cards, kind: tcp, mq: Cards, target: 127.0.0.1:9001, framing: fixed, record_size: 32 }
/// ```
public struct TcpAdapterFactory: ProxyAdapterFactory {
    /// Creates the factory.
    public init() {}

    /// `target` (HOST:PORT), `framing` (newline | length2 | length4 | fixed), `record_size` (fixed), `max_record`,
    /// `pipeline` (records in flight on one connection, for a service that answers them in order; default 1).
    public var configKeys: [String] { ["target", "framing", "record_size", "max_record", "pipeline"] }

    /// Builds a `tcp` adapter; it connects only when the first call comes.
    ///
    /// - Throws: ``ConfigError`` for a missing or bad `target`, an unknown framing, or `fixed` without `record_size`.
    public func makeAdapter(config: ConfigSection) throws(ConfigError) -> any ProxyAdapter {
        let settings = try ProxyAdapterSettings(config)
        guard let target = try config.address("target") else {
            throw config.value.error("missing key 'target': the legacy service's HOST:PORT")
        }
        let framingName = try config.choice("framing", allowed: TcpFraming.names) ?? "newline"
        let recordSize = try config.int("record_size", in: 1...(1 << 24))
        let framing: TcpFraming
        switch framingName {
        case "length2": framing = .length2
        case "length4": framing = .length4
        case "fixed":
            guard let recordSize else {
                throw (config["framing"] ?? config.value).error("framing 'fixed' needs `record_size: BYTES`")
            }
            framing = .fixed(recordSize)
        default: framing = .newline
        }
        if recordSize != nil, case .fixed = framing {} else if let location = config["record_size"] {
            throw location.keyError("`record_size` only applies to `framing: fixed`")
        }
        let maxRecord = try config.byteSize("max_record") ?? (1 << 20)
        let pipeline = try config.int("pipeline", in: 1...PipelinedLegacyClient.maxDepth) ?? 1
        return TcpAdapter(name: settings.name, target: target, framing: framing, maxRecord: maxRecord,
                          connectTimeout: settings.timeout, maxIdle: settings.maxInFlight, pipeline: pipeline)
    }
}

/// Calls a legacy framed TCP service over pooled connections.
final class TcpAdapter: TimedProxyAdapter, LoopProxyAdapter {
    let address: String
    private let name: String
    private let target: HostAndPort
    private let framing: TcpFraming
    private let connectTimeout: Duration
    private let configure: LegacyClientPool<ByteBuffer, ByteBuffer>.Configure
    private let pool: LegacyClientPool<ByteBuffer, ByteBuffer>
    /// Records in flight on one loop connection (1: one call per worker connection).
    let pipelineDepth: Int
    private let pipelined = PipelinedClients()

    init(name: String, target: HostAndPort, framing: TcpFraming, maxRecord: Int, connectTimeout: Duration, maxIdle: Int,
         pipeline: Int = 1) {
        self.name = name
        self.pipelineDepth = pipeline
        self.target = target
        self.framing = framing
        self.connectTimeout = connectTimeout
        self.address = target.description
        configure = { channel in
            try channel.pipeline.syncOperations.addHandler(TcpExchangeCodec(framing: framing, maxRecord: maxRecord))
        }
        pool = LegacyClientPool(service: name, address: target, connectTimeout: connectTimeout, maxIdle: maxIdle, configure: configure,
                                notRepeatable: { _ in Self.notRepeatable })
    }

    func call(_ request: Message) async throws -> Message {
        try await call(request, timeout: .seconds(60))
    }

    func call(_ request: Message, timeout: Duration) async throws -> Message {
        Self.reply(try await pool.exchange(try record(of: request), timeout: timeout))
    }

    func makeLoopCaller(on eventLoop: any EventLoop, timeout: Duration) -> any LoopLegacyCaller {
        let configure = self.configure
        let loopConfigure: @Sendable (any Channel) throws -> Void = { channel in
            try configure(channel)
            try channel.pipeline.syncOperations.addHandler(TcpMessageCodec())
        }
        let check: @Sendable (Message) throws -> Void = { [self] message in _ = try record(of: message) }
        // The codec is called directly by the handler behind it: no `NIOAny` box per request and reply.
        let exchange = TcpMessageCodec.inPipeline
        guard pipelineDepth > 1 else {
            return LoopLegacyClient(on: eventLoop, service: name, address: target, connectTimeout: connectTimeout,
                                    timeout: timeout, configure: loopConfigure, exchange: exchange, check: check,
                                    notRepeatable: { _ in Self.notRepeatable })
        }
        return pipelined.caller(on: eventLoop) {
            // A record may change state on the service: never sent twice.
            PipelinedLegacyClient(on: eventLoop, service: name, address: target, connectTimeout: connectTimeout,
                                  timeout: timeout, depth: pipelineDepth, configure: loopConfigure, exchange: exchange,
                                  check: check,
                                  retriable: { _ in false })
        }
    }

    /// Why a record written is never sent again: the adapter cannot tell whether the service would act on it twice.
    private static let notRepeatable = "a tcp record is sent at most once: the adapter cannot tell whether the service may take it twice"

    /// The record sent for `request`: its body, refused (400) before connecting when it cannot be framed.
    private func record(of request: Message) throws -> ByteBuffer {
        let body = request.body ?? ByteBuffer()
        if let refusal = framing.refusal(of: body) { throw ProxyError.badRequest(service: name, reason: refusal.description) }
        return body
    }

    private static func reply(_ record: ByteBuffer) -> Message {
        var message = Message(status: 200)
        message.body = record
        return message
    }

    func shutdown() async {
        await pool.shutdown()
    }
}

/// The codec of a `tcp` adapter's loop connection: a message's body is the record written, a record read is the body
/// of the `200` routed back.
final class TcpMessageCodec: ChannelDuplexHandler, DirectMessageExchange {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = Message
    typealias OutboundIn = Message
    typealias OutboundOut = ByteBuffer

    /// Its context while it is in a pipeline, for ``writeRequest(_:)``.
    private var context: ChannelHandlerContext?
    var replySink: ((Message) -> Void)?

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        replySink = nil
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        context.write(wrapOutboundOut(unwrapOutboundIn(data).body ?? ByteBuffer()), promise: promise)
    }

    func writeRequest(_ request: Message) {
        // Out of the pipeline, nothing is written: the connection's close fails its calls.
        context?.write(wrapOutboundOut(request.body ?? ByteBuffer()), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var reply = Message(status: 200)
        reply.body = unwrapInboundIn(data)
        if let replySink { replySink(reply) } else { context.fireChannelRead(wrapInboundOut(reply)) }
    }
}
