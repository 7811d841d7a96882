// Consumes an MQ until nothing comes for IDLE-SECONDS (5 by default), printing each message.
//
//   swift run zbus-example-consumer [HOST:PORT] [MQ] [IDLE-SECONDS]
import ZbusClient

let arguments = CommandLine.arguments
let address = arguments.count > 1 ? arguments[1] : "127.0.0.1:15555"
let mq = arguments.count > 2 ? arguments[2] : "MyMQ"
let idleSeconds = arguments.count > 3 ? Int(arguments[3]) ?? 5 : 5

let broker = try ZbusBroker.connect(address)
let consumer = Consumer(broker: broker, mq: mq)   // creates the MQ if it does not exist
while let message = try await consumer.take(timeout: .seconds(idleSeconds)) {
    print("\(message.id ?? "-"): \(message.bodyString)")
}
await consumer.close()                            // acknowledges the last message
await broker.close()
