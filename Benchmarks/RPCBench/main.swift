// RPC load through the ZbusRPC invokers: calls/s and latency percentiles of `calc.plus` at a fixed number of concurrent
// callers, each with one call in flight.
//
//   zbus-rpc-bench mq HOST:PORT MQ [CALLERS] [SECONDS] [POOL]     MQ-RPC: produce ack 0, wait for the routed answer
//   zbus-rpc-bench direct HOST:PORT [CALLERS] [SECONDS] [POOL]    direct RPC to a direct RPC server
//   zbus-rpc-bench local - [CALLERS] [SECONDS]                     no transport: invoker, codec and processor only
//
// Prints one line: `mode=mq executor=swift callers=16 calls=N seconds=S rate=R p50_us=A p99_us=B errors=E`.
//
// ZBUS_RPC_BENCH_EXECUTOR=nio runs the callers' tasks on NIO's event loops (NIO's opt-in for servers, which saves
// thread hops); the default keeps Swift's own executor.
import Foundation
import NIOCore
import NIOPosix
import ZbusRPC

let arguments = CommandLine.arguments
func usage() -> Never {
    FileHandle.standardError.write(Data("usage: zbus-rpc-bench mq HOST:PORT MQ [CALLERS] [SECONDS] [POOL] | direct HOST:PORT [CALLERS] [SECONDS] [POOL]\n".utf8))
    exit(2)
}
guard arguments.count >= 3 else { usage() }
let mode = arguments[1]
let address = arguments[2]
let rest = Array(arguments.dropFirst(mode == "mq" ? 4 : 3))
guard mode == "direct" || mode == "local" || (mode == "mq" && arguments.count >= 4) else { usage() }
let callers = rest.count > 0 ? Int(rest[0]) ?? 16 : 16
let seconds = rest.count > 1 ? Double(rest[1]) ?? 5 : 5
let pool = rest.count > 2 ? Int(rest[2]) ?? 4 : 4

let executor = ProcessInfo.processInfo.environment["ZBUS_RPC_BENCH_EXECUTOR"] ?? "swift"
if executor == "nio" {
    _ = NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
}

var configuration = ClientConfiguration()
configuration.heartbeatInterval = nil
/// Answers in this process with a `calc.plus` processor: measures what RPC costs besides the transport.
struct LocalInvoker: MessageInvoker {
    let responder: RpcResponder = {
        var processor = RpcProcessor()
        processor.module("calc") { $0.method("plus") { (a: Int, b: Int) in a &+ b } }
        return RpcResponder(processor: processor)
    }()
    var target: String { "local" }
    nonisolated(nonsending) func invoke(_ request: Message, timeout: Duration) async throws -> Message { await responder.respond(to: request) }
}

let broker = try SingleBroker(address: mode == "local" ? "127.0.0.1:1" : address, configuration: configuration, poolSize: pool)
let rpc = switch mode {
case "mq": RpcInvoker(broker: broker, mq: arguments[3], module: "calc", timeout: .seconds(10))
case "local": RpcInvoker(LocalInvoker(), module: "calc")
default: RpcInvoker(broker: broker, module: "calc", timeout: .seconds(10))
}

/// Runs `callers` loops for `duration`; returns per-call latencies (ns) and the error count.
func run(for duration: Duration) async -> (latencies: [UInt64], errors: Int, elapsed: Duration) {
    let clock = ContinuousClock()
    let start = clock.now
    let end = start + duration
    let results = await withTaskGroup(of: ([UInt64], Int).self) { group in
        for caller in 0..<callers {
            group.addTask {
                var latencies: [UInt64] = []
                latencies.reserveCapacity(200_000)
                var errors = 0
                var index = caller
                while clock.now < end {
                    let sent = clock.now
                    do {
                        let sum = try await rpc.call("plus", index, 1, as: Int.self)
                        if sum != index + 1 { errors += 1 }
                    } catch {
                        errors += 1
                        if errors == 1 { FileHandle.standardError.write(Data("first error: \(error)\n".utf8)) }
                    }
                    let took = clock.now - sent
                    latencies.append(UInt64(took.components.seconds) * 1_000_000_000 + UInt64(took.components.attoseconds / 1_000_000_000))
                    index += callers
                }
                return (latencies, errors)
            }
        }
        var all: [UInt64] = []
        var errors = 0
        for await (latencies, failed) in group {
            all.append(contentsOf: latencies)
            errors += failed
        }
        return (all, errors)
    }
    return (results.0, results.1, clock.now - start)
}

_ = await run(for: .seconds(1))  // warm up: connections, caches, the service's workers
let (latencies, errors, elapsed) = await run(for: .milliseconds(Int(seconds * 1000)))
let sorted = latencies.sorted()
func percentile(_ p: Double) -> Double {
    guard !sorted.isEmpty else { return 0 }
    return Double(sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]) / 1000
}
let elapsedSeconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
print(String(format: "mode=%@ executor=%@ callers=%d calls=%d seconds=%.2f rate=%.0f p50_us=%.0f p99_us=%.0f errors=%d",
             mode, executor, callers, sorted.count, elapsedSeconds, Double(sorted.count) / elapsedSeconds, percentile(0.50), percentile(0.99), errors))
await broker.close()
