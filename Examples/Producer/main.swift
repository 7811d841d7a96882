// Produces a few messages to an MQ, creating it first.
//
//   swift run zbus-example-producer [HOST:PORT] [MQ] [COUNT]
import ZbusClient

let arguments = CommandLine.arguments
let address = arguments.count > 1 ? arguments[1] : "127.0.0.1:15555"
let mq = arguments.count > 2 ? arguments[2] : "MyMQ"
let count = arguments.count > 3 ? Int(arguments[3]) ?? 3 : 3

let broker = try ZbusBroker.connect(address)
let producer = Producer(broker: broker, mq: mq)
try await producer.createMQ()
for index in 1...count {
    let ack = try await producer.send("hello world \(index)")
    print("stored message \(index) at \(ack.bodyString)")
}
await broker.close()
