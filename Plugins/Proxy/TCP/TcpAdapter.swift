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

    /// `target` (HOST:PORT), `framing` (newline | length2 | length4 | fixed), `record_size` (fixed), `max_record`.
    public var configKeys: [String] { ["target", "framing", "record_size", "max_record"] }

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
        return TcpAdapter(name: settings.name, target: target, framing: framing, maxRecord: maxRecord,
                          connectTimeout: settings.timeout, maxIdle: settings.maxInFlight)
    }
}

/// Calls a legacy framed TCP service over pooled connections.
final class TcpAdapter: TimedProxyAdapter {
    let address: String
    private let name: String
    private let framing: TcpFraming
    private let pool: LegacyClientPool<ByteBuffer, ByteBuffer>

    init(name: String, target: HostAndPort, framing: TcpFraming, maxRecord: Int, connectTimeout: Duration, maxIdle: Int) {
        self.name = name
        self.framing = framing
        self.address = target.description
        pool = LegacyClientPool(
            service: name, address: target, connectTimeout: connectTimeout, maxIdle: maxIdle,
            configure: { channel in
                try channel.pipeline.syncOperations.addHandler(MessageToByteHandler(TcpRecordEncoder(framing: framing)))
                try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(TcpRecordDecoder(framing: framing, maxRecord: maxRecord)))
            })
    }

    func call(_ request: Message) async throws -> Message {
        try await call(request, timeout: .seconds(60))
    }

    func call(_ request: Message, timeout: Duration) async throws -> Message {
        let body = request.body ?? ByteBuffer()
        do {
            _ = try framing.frame(body, allocator: ByteBufferAllocator())  // refuse what cannot be framed before connecting
        } catch {
            throw ProxyError.badRequest(service: name, reason: error.description)
        }
        let reply = try await pool.exchange(body, timeout: timeout)
        var message = Message(status: 200)
        message.body = reply
        return message
    }

    func shutdown() async {
        await pool.shutdown()
    }
}
