// Producer/consumer load through the ZbusClient API, printing the same line as zload for a side-by-side ratio.
//
//   zbus-client-bench HOST:PORT produce|consume MQ CONNECTIONS COUNT_PER_CONNECTION [BODY_BYTES] [pinned]
//
// produce: one SingleBroker with CONNECTIONS pooled connections and CONNECTIONS tasks, each sending COUNT messages
//          with ack (Producer.send), one at a time, as zload's threads do.
// consume: CONNECTIONS Consumers, each taking COUNT messages (Consumer.take), as zload's consume threads do.
import NIOPosix
import ZbusClient

#if canImport(Glibc)
import Glibc
#endif

let arguments = CommandLine.arguments
guard arguments.count >= 6, let connections = Int(arguments[4]), let count = Int(arguments[5]) else {
    FileHandle.standardErrorWrite("usage: zbus-client-bench HOST:PORT produce|consume MQ CONNECTIONS COUNT_PER_CONNECTION [BODY_BYTES]\n")
    exit(2)
}
let address = arguments[1]
let mode = arguments[2]
let mq = arguments[3]
let bodySize = arguments.count > 6 ? Int(arguments[6]) ?? 11 : 11
let pinned = arguments.count > 7 && arguments[7] == "pinned"
let body = String(repeating: "x", count: bodySize)

// ZBUS_BENCH_THREADS: event loop threads of the client (default: NIO's shared group, one per core).
let threads = Int(getenv("ZBUS_BENCH_THREADS").map { String(cString: $0) } ?? "") ?? 0
let group: MultiThreadedEventLoopGroup? = threads > 0 ? MultiThreadedEventLoopGroup(numberOfThreads: threads) : nil
let broker = try SingleBroker(address: address, poolSize: connections, eventLoopGroup: group)
let clock = ContinuousClock()
let start = clock.now

let results = try await withThrowingTaskGroup(of: (ok: Int, fail: Int, latencies: [Double]).self) { group in
    for _ in 0..<connections {
        group.addTask {
            var result: (ok: Int, fail: Int, latencies: [Double])
            switch mode {
            case "produce":
                let producer = Producer(broker: broker, mq: mq)
                let produce: @Sendable () async -> (ok: Int, fail: Int, latencies: [Double]) = {
                    await Timing.loop(count: count) { (try? await producer.send(body)) != nil }
                }
                if pinned {
                    result = await withTaskExecutorPreference(broker.pooledClient().taskExecutor) { await produce() }
                } else {
                    result = await produce()
                }
            case "consume":
                let consumer = Consumer(broker: broker, mq: mq)
                let consume: @Sendable () async -> (ok: Int, fail: Int, latencies: [Double]) = {
                    await Timing.loop(count: count) { (try? await consumer.take(timeout: .seconds(5))) != nil }
                }
                if pinned {
                    result = await withTaskExecutorPreference(consumer.taskExecutor) { await consume() }
                } else {
                    result = await consume()
                }
                await consumer.close()
            default:
                FileHandle.standardErrorWrite("unknown mode \(mode)\n")
                exit(2)
            }
            return result
        }
    }
    var total: (ok: Int, fail: Int, latencies: [Double]) = (0, 0, [])
    for try await result in group {
        total.ok += result.ok
        total.fail += result.fail
        total.latencies += result.latencies
    }
    return total
}
let elapsed = clock.now - start
let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
let sorted = results.latencies.sorted()
let p50 = sorted.isEmpty ? 0 : sorted[sorted.count / 2]
let p99 = sorted.isEmpty ? 0 : sorted[Int(Double(sorted.count) * 0.99)]
print("\(mode) ok=\(results.ok) fail=\(results.fail) secs=\(format3(seconds)) rate=\(Int((Double(results.ok) / seconds).rounded()))/s p50=\(Int(p50))us p99=\(Int(p99))us")
await broker.close()
exit(results.fail == 0 ? 0 : 1)

enum Timing {
    /// Runs `operation` `count` times, one at a time, counting successes and timing each call in microseconds.
    nonisolated(nonsending) static func loop(count: Int, _ operation: nonisolated(nonsending) () async -> Bool) async -> (ok: Int, fail: Int, latencies: [Double]) {
        let clock = ContinuousClock()
        var ok = 0
        var fail = 0
        var latencies: [Double] = []
        latencies.reserveCapacity(count)
        for _ in 0..<count {
            let sent = clock.now
            if await operation() { ok += 1 } else { fail += 1 }
            latencies.append(Double((clock.now - sent) / .microseconds(1)))
        }
        return (ok, fail, latencies)
    }
}

func format3(_ value: Double) -> String {
    let millis = Int((value * 1000).rounded())
    let fraction = String(millis % 1000)
    return "\(millis / 1000)." + String(repeating: "0", count: 3 - fraction.count) + fraction
}

enum FileHandle {
    static func standardErrorWrite(_ text: String) {
        var text = text
        text.withUTF8 { bytes in _ = write(2, bytes.baseAddress, bytes.count) }
    }
}
