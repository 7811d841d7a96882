import NIOCore
import NIOPosix
import ZbusKernel
import ZbusProxy

// Steps 2 and 3 of the README walk-through: a factory that reads the adapter's own keys, and the adapter that turns a
// message into one protocol request and the service's answer into a reply.

/// Builds `kv-line` adapters from their YAML entry (`target: HOST:PORT`, optional `connect_timeout`).
public struct KvLineAdapterFactory: ProxyAdapterFactory {
    /// Creates the factory.
    public init() {}

    /// `target`, `connect_timeout`.
    public var configKeys: [String] { ["target", "connect_timeout"] }

    /// Builds an adapter; nothing connects before the first call.
    ///
    /// - Throws: ``ConfigError`` for a missing or bad `target`.
    public func makeAdapter(config: ConfigSection) throws(ConfigError) -> any ProxyAdapter {
        guard let target = try config.address("target") else {
            throw config.value.error("missing key 'target': the key-value service's HOST:PORT")
        }
        let connectTimeout = try config.milliseconds("connect_timeout", in: 1...60_000) ?? 2_000
        return KvLineAdapter(name: try config.string("name") ?? "kv-line", target: target, connectTimeout: .milliseconds(connectTimeout))
    }
}

/// Why a `kv-line` call failed (the proxy runtime turns a thrown error into a 502 naming the adapter).
public enum KvLineError: Error, Sendable, CustomStringConvertible {
    /// The request is not `get KEY`, `set KEY VALUE` or `delete KEY`.
    case badRequest(String)
    /// The service could not be reached.
    case unreachable(address: String, reason: String)
    /// The service answered something outside the protocol, or closed early.
    case badReply(address: String, reply: String)

    /// What went wrong and what to check.
    public var description: String {
        switch self {
        case .badRequest(let line):
            return "kv-line request '\(line)' is not `get KEY`, `set KEY VALUE` or `delete KEY`"
        case .unreachable(let address, let reason):
            return "kv-line service at \(address) is down: \(reason)"
        case .badReply(let address, let reply):
            return "kv-line service at \(address) answered outside the protocol: '\(reply)'"
        }
    }
}

/// Calls a line-based key-value service: the message body is the command line, the answer line becomes the reply.
///
/// | service answers | reply |
/// |---|---|
/// | `VALUE v` | 200, body `v` |
/// | `STORED`, `DELETED` | 200, body the word |
/// | `NOT_FOUND` | 404, body `NOT_FOUND` |
/// | `ERROR text` | 400, body `text` |
/// | anything else | a thrown ``KvLineError/badReply(address:reply:)`` (502) |
final class KvLineAdapter: ProxyAdapter {
    let name: String
    let target: HostAndPort
    let connectTimeout: Duration

    init(name: String, target: HostAndPort, connectTimeout: Duration) {
        self.name = name
        self.target = target
        self.connectTimeout = connectTimeout
    }

    func call(_ request: Message) async throws -> Message {
        let line = request.bodyString.trimmedLine
        let words = line.split(separator: " ", maxSplits: 2)
        guard let verb = words.first, !line.contains("\n"),
              (verb == "get" && words.count == 2) || (verb == "delete" && words.count == 2) || (verb == "set" && words.count == 3)
        else {
            var reply = Message(status: 400)
            reply.setBody(KvLineError.badRequest(line).description)
            return reply
        }
        let answer = try await exchange(line)
        var reply: Message
        if answer.hasPrefix("VALUE ") {
            reply = Message(status: 200)
            reply.setBody(String(answer.dropFirst("VALUE ".count)))
        } else if answer == "STORED" || answer == "DELETED" {
            reply = Message(status: 200)
            reply.setBody(answer)
        } else if answer == "NOT_FOUND" {
            reply = Message(status: 404)
            reply.setBody(answer)
        } else if answer.hasPrefix("ERROR") {
            reply = Message(status: 400)
            reply.setBody(String(answer.dropFirst("ERROR".count)).trimmedLine)
        } else {
            throw KvLineError.badReply(address: target.description, reply: answer)
        }
        return reply
    }

    func shutdown() async {}

    // Step 4 of the walk-through would be pooling connections (the built-in `tcp` adapter does); the example opens one
    // connection per call to stay short. Cancellation (the runtime's timeout) closes it.
    private func exchange(_ line: String) async throws -> String {
        let address = target.description
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.nanoseconds(connectTimeout.components.seconds * 1_000_000_000 + connectTimeout.components.attoseconds / 1_000_000_000))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(LineReplyHandler()) }
                }
                .connect(host: target.host, port: target.port).get()
        } catch {
            // A refused connect comes as NIOConnectionError, one failure per address tried: name the first.
            let failure = (error as? NIOConnectionError)?.connectionErrors.first?.error ?? error
            throw KvLineError.unreachable(address: address, reason: ErrorText.describe(failure))
        }
        defer { channel.close(promise: nil) }
        let handler = try await channel.eventLoop.submit { try channel.pipeline.syncOperations.handler(type: LineReplyHandler.self) }.get()
        let promise = channel.eventLoop.makePromise(of: String.self)
        return try await withTaskCancellationHandler {
            channel.eventLoop.execute {
                handler.waitFor(promise)
                channel.writeAndFlush(ByteBuffer(string: line + "\n"), promise: nil)
            }
            do {
                return try await promise.futureResult.get()
            } catch let error as LineReplyHandler.Closed {
                throw KvLineError.badReply(address: address, reply: error.partial)
            }
        } onCancel: {
            channel.close(promise: nil)
        }
    }
}

/// Collects bytes up to the first newline and completes the waiting promise with that line.
final class LineReplyHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer

    /// The connection closed before a full line.
    struct Closed: Error {
        let partial: String
    }

    // Confined to the channel's event loop.
    private var buffer = ByteBuffer()
    private var promise: EventLoopPromise<String>?

    func waitFor(_ promise: EventLoopPromise<String>) {
        self.promise = promise
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        buffer.writeBuffer(&bytes)
        guard let index = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")), let promise else { return }
        var line = buffer.getString(at: buffer.readerIndex, length: index - buffer.readerIndex) ?? ""
        if line.hasSuffix("\r") { line.removeLast() }
        self.promise = nil
        promise.succeed(line)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise?.fail(Closed(partial: buffer.getString(at: buffer.readerIndex, length: buffer.readableBytes) ?? ""))
        promise = nil
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise?.fail(error)
        promise = nil
        context.close(promise: nil)
    }
}

extension String {
    /// Without leading and trailing spaces, tabs, `\r` and `\n`.
    fileprivate var trimmedLine: String {
        let blank: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "\n" || $0 == "\r\n" }
        return String(drop(while: blank).reversed().drop(while: blank).reversed())
    }
}
