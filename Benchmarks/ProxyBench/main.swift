// Proxy overhead: calls/s of a legacy HTTP backend called directly, against the same backend called through the bus
// (`http` proxy adapter), same process, same run. Started by Benchmarks/proxy.sh.
//
//   zbus-proxy-bench BACKEND_PORT BUS_HOST:PORT MQ [CALLERS] [SECONDS]
//   zbus-proxy-bench - BUS_HOST:PORT MQ CALLERS SECONDS EXPECTED_BODY
//
// Binds the backend (a keep-alive HTTP/1.1 server answering `quote <path>`) on BACKEND_PORT, then runs CALLERS
// concurrent callers (one call in flight each) for SECONDS: first directly over keep-alive connections, then through
// the bus (MqInvoker: produce with ack 0 to MQ, the adapter consumes, calls the backend and routes the answer).
// Prints `mode=direct ...` and `mode=proxy ...` lines and the direct/proxy ratio. With `-` for the port, the backend is
// someone else's (Benchmarks/proxy-vs-nginx.sh puts nginx there): only the bus is measured, each answer checked
// against EXPECTED_BODY.
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import ZbusClient
import ZbusRPC

let arguments = CommandLine.arguments
let externalBackend = arguments.count >= 7 && arguments[1] == "-"
guard arguments.count >= 4, let backendPort = externalBackend ? 0 : Int(arguments[1]) else {
    FileHandle.standardError.write(Data("usage: zbus-proxy-bench BACKEND_PORT BUS_HOST:PORT MQ [CALLERS] [SECONDS]\n       zbus-proxy-bench - BUS_HOST:PORT MQ CALLERS SECONDS EXPECTED_BODY\n".utf8))
    exit(2)
}
let busAddress = arguments[2]
let mq = arguments[3]
let callers = arguments.count > 4 ? Int(arguments[4]) ?? 16 : 16
let seconds = arguments.count > 5 ? Double(arguments[5]) ?? 5 : 5
let expected = externalBackend ? arguments[6] : "quote /q"
let group = MultiThreadedEventLoopGroup.singleton

/// The legacy backend.
final class BackendHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    private var uri = "/"

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): uri = head.uri
        case .body: break
        case .end:
            let body = "quote \(uri)"
            let headers = HTTPHeaders([("content-type", "text/plain"), ("content-length", String(body.utf8.count))])
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }
}

/// A keep-alive HTTP client with one request in flight.
final class DirectClientHandler: ChannelDuplexHandler, @unchecked Sendable {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = EventLoopPromise<String>
    typealias OutboundOut = HTTPClientRequestPart
    private var pending: EventLoopPromise<String>?
    private var body = ByteBuffer()

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        pending = unwrapOutboundIn(data)
        let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/q", headers: ["host": "127.0.0.1", "content-length": "0"])
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head: body.clear()
        case .body(var part): body.writeBuffer(&part)
        case .end:
            let promise = pending
            pending = nil
            promise?.succeed(String(buffer: body))
        }
    }
}

func measure(_ name: String, _ call: @escaping @Sendable (Int) async throws -> String) async -> Double {
    let clock = ContinuousClock()
    let warmEnd = clock.now + .seconds(1)
    let start = warmEnd
    let end = start + .milliseconds(Int(seconds * 1000))
    let counts = await withTaskGroup(of: (Int, Int).self) { group in
        for caller in 0..<callers {
            group.addTask {
                var calls = 0
                var errors = 0
                while clock.now < end {
                    let measuring = clock.now >= start
                    do {
                        let answer = try await call(caller)
                        if answer != expected { errors += 1 } else if measuring { calls += 1 }
                    } catch {
                        errors += 1
                    }
                }
                return (calls, errors)
            }
        }
        var total = (0, 0)
        for await (calls, errors) in group { total = (total.0 + calls, total.1 + errors) }
        return total
    }
    let rate = Double(counts.0) / seconds
    print("mode=\(name) callers=\(callers) calls=\(counts.0) seconds=\(seconds) rate=\(Int(rate)) errors=\(counts.1)")
    return rate
}

/// Through the bus: MqInvoker, produce with ack 0 to `mq`, the adapter's routed answer awaited.
func measureBus() async throws -> Double {
    var configuration = ClientConfiguration()
    configuration.heartbeatInterval = nil
    let broker = try SingleBroker(address: busAddress, configuration: configuration, poolSize: 4)
    let invoker = MqInvoker(broker: broker, mq: mq)
    let rate = await measure("proxy") { _ in
        var request = Message(method: "POST", uri: "/", headers: Headers([("path", "/q")]))
        request.setBody("")
        return try await invoker.invoke(request, timeout: .seconds(10)).bodyString
    }
    await broker.close()
    return rate
}

if externalBackend {
    _ = try await measureBus()
    exit(0)
}

let backend = try await ServerBootstrap(group: group)
    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
    .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.configureHTTPServerPipeline()
            try channel.pipeline.syncOperations.addHandler(BackendHandler())
        }
    }
    .bind(host: "127.0.0.1", port: backendPort).get()

// Direct: one keep-alive connection per caller.
var directChannels: [any Channel] = []
for _ in 0..<callers {
    directChannels.append(try await ClientBootstrap(group: group)
        .channelOption(.socketOption(.tcp_nodelay), value: 1)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHTTPClientHandlers()
                try channel.pipeline.syncOperations.addHandler(DirectClientHandler())
            }
        }
        .connect(host: "127.0.0.1", port: backendPort).get())
}
let channels = directChannels
let direct = await measure("direct") { caller in
    let channel = channels[caller]
    let promise = channel.eventLoop.makePromise(of: String.self)
    channel.writeAndFlush(promise, promise: nil)
    return try await promise.futureResult.get()
}

let proxied = try await measureBus()
print(String(format: "direct/proxy = %.2f (the bus costs %.0f%% of direct throughput)", direct / max(proxied, 1), 100 * (1 - proxied / max(direct, 1))))
for channel in channels { channel.close(promise: nil) }
try await backend.close().get()
