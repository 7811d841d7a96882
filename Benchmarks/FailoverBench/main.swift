// The producer and the checker of Benchmarks/failover.sh: an HA client of a cluster, through its trackers.
//
//   zbus-failover-bench TRACKERS produce MQ SECONDS   creates MQ on every broker, then sends one acknowledged produce
//                                                    at a time for SECONDS; prints `ack EPOCH_NS ID` or
//                                                    `fail EPOCH_NS ERROR` per produce, and a summary on stderr
//   zbus-failover-bench TRACKERS drain MQ            consumes from every broker until nothing came for 3 s;
//                                                    prints `got ID` per message
import Logging
import ZbusClient

#if canImport(Glibc)
import Glibc
#endif

func epochNanoseconds() -> Int64 {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
}

func fail(_ text: String) -> Never {
    var line = text + "\n"
    line.withUTF8 { bytes in _ = write(2, bytes.baseAddress, bytes.count) }
    exit(2)
}

let arguments = CommandLine.arguments
guard arguments.count >= 4 else { fail("usage: zbus-failover-bench TRACKERS produce MQ SECONDS | TRACKERS drain MQ") }
let mq = arguments[3]
LoggingSystem.bootstrap { label in
    var handler = StreamLogHandler.standardError(label: label)
    // ZBUS_BENCH_LOG=debug shows what the HA broker does.
    handler.logLevel = getenv("ZBUS_BENCH_LOG").flatMap { Logger.Level(rawValue: String(cString: $0)) } ?? .warning
    return handler
}
let broker: any Broker
do {
    broker = try ZbusBroker.connect(arguments[1])
} catch {
    fail("\(error)")
}
guard let cluster = broker as? HaBroker else { fail("TRACKERS must be a tracker list, for example [127.0.0.1:16666]") }
if arguments[2] == "produce" {
    // Every broker the trackers name within a moment gets the MQ.
    _ = await cluster.waitForTopology(timeout: .seconds(3)) { $0.serverAddresses.count >= 2 }
    do { try await Producer(broker: broker, mq: mq).createMQ() } catch { fail("cannot create \(mq): \(error)") }
}
guard await cluster.waitForTopology(timeout: .seconds(10), { !$0.servers(hosting: mq).isEmpty }) != nil else {
    fail("no broker hosts \(mq) after 10 s: \(cluster.topology)")
}

switch arguments[2] {
case "produce":
    guard arguments.count >= 5, let seconds = Double(arguments[4]) else { fail("produce needs SECONDS") }
    let producer = Producer(broker: broker, mq: mq)
    let end = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    var index = 0
    var (acknowledged, failed) = (0, 0)
    var longest = Duration.zero
    while ContinuousClock.now < end {
        let id = "f\(index)"
        index += 1
        let started = ContinuousClock.now
        do {
            try await producer.send(Message(text: "failover \(id)", headers: [("id", id)]))
            print("ack \(epochNanoseconds()) \(id)")
            acknowledged += 1
        } catch {
            print("fail \(epochNanoseconds()) \(String(describing: error).replacingOccurrences(of: "\n", with: " "))")
            failed += 1
        }
        longest = max(longest, ContinuousClock.now - started)
    }
    let longestMs = Double(longest.components.seconds) * 1000 + Double(longest.components.attoseconds) / 1e15
    var summary = "produced \(mq): acknowledged \(acknowledged), failed \(failed), "
        + "longest wait for an acknowledgement \(Int(longestMs.rounded())) ms\n"
    summary.withUTF8 { bytes in _ = write(2, bytes.baseAddress, bytes.count) }
case "drain":
    let consumer = Consumer(broker: broker, mq: mq)
    while let message = try await consumer.take(timeout: .seconds(3)) {
        print("got \(message.id ?? "-")")
    }
    await consumer.close()
default:
    fail("unknown mode \(arguments[2]): produce or drain")
}
await broker.close()
