// Runs a zbus node inside this program: a consumer and a producer talk to it in-process, while other programs can
// connect to the printed address.
//
//   swift run zbus-example-embedded [STORE-DIRECTORY]
import Zbus

let store = CommandLine.arguments.count > 1 ? CommandLine.arguments[1] : "./embedded-data"
let node = try await ZbusNode(store: store).start()
print("node listening on \(node.address!)")

let broker = node.broker()
let producer = Producer(broker: broker, mq: "Greetings")
try await producer.createMQ()                     // a produce to an MQ that does not exist is refused (404)
let consumer = Consumer(broker: broker, mq: "Greetings")
try await producer.send("hello from an embedded node")
if let message = try await consumer.take(timeout: .seconds(2)) {
    print("consumed in-process: \(message.bodyString)")
}
await consumer.close()
await broker.close()
await node.stop()
