import Logging
import NIOCore
import NIOEmbedded
import Testing
import ZbusKernel

@testable import ZbusMQ

/// A session's way out in a test: what was sent to it, on an embedded event loop.
final class RecordingTransport: SessionTransport, @unchecked Sendable {
    let eventLoop: any EventLoop
    private(set) var written: [Message] = []

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    func write(_ message: Message) { written.append(message) }
    func flush() {}
    func close() {}
}

/// An in-memory MQ (no store, no sockets) driven on `loop`.
func memoryQueue(_ name: String, mode: MQMode = .memory, maxLength: Int64 = 0) -> MessageQueue {
    let definition = MQDefinition(name: name, mode: mode.rawValue, accessToken: "", creator: "test", masterMq: nil,
                                  maxLength: maxLength, createdAt: 0)
    return MessageQueue(definition: definition, backend: MemoryBackend(), durableQueue: nil, limits: MessageQueue.Limits(),
                        logger: Logger(label: "test"))
}

/// A produce request with body `body` and header `x-tag: tag`.
func produced(_ body: String, tag: String) -> Message {
    var message = Message(method: "POST", uri: "/")
    message.headers.set(lowercased: "x-tag", tag)
    message.setBody(body)
    return message
}

@Suite("Master and slave MQs")
struct MasterSlaveCopyTests {
    @Test("slaves are kept by name in the order attached; a slave of the same name replaces the old one in place")
    func slaveQueues() {
        final class Queue {}
        let (a, b, c) = (Queue(), Queue(), Queue())
        var slaves = SlaveQueues<Queue>()
        #expect(slaves.isEmpty)
        slaves.attach(a, named: "A")
        slaves.attach(b, named: "B")
        slaves.attach(c, named: "A")
        #expect(slaves.count == 2 && slaves.values.map(ObjectIdentifier.init) == [ObjectIdentifier(c), ObjectIdentifier(b)])
        slaves.detach(named: "A")
        slaves.detach(named: "missing")
        #expect(slaves["A"] == nil && slaves["B"] === b && slaves.count == 1)
    }

    @Test("a slave MQ gets a copy of every message produced to its master, headers untouched; a detached one no more")
    func copies() throws {
        let loop = EmbeddedEventLoop()
        let master = memoryQueue("M")
        let (first, second) = (memoryQueue("S1"), memoryQueue("S2"))
        master.attachSlave(first)
        master.attachSlave(second)
        try master.produce(produced("m1", tag: "one"), key: "k1", keyGroup: "", on: loop, receipt: .none).send()
        loop.run()
        #expect(master.backend.pendingCount == 1 && first.backend.pendingCount == 1 && second.backend.pendingCount == 1)
        master.detachSlave(named: "S2")
        try master.produce(produced("m2", tag: "two"), key: nil, keyGroup: "", on: loop, receipt: .none).send()
        loop.run()
        #expect(master.backend.pendingCount == 2 && first.backend.pendingCount == 2 && second.backend.pendingCount == 1)
        // The copy carries no key: the same key produced to the slave itself is not a duplicate there.
        _ = try first.produce(produced("m3", tag: "three"), key: "k1", keyGroup: "", on: loop, receipt: .none)
        loop.run()
        let transport = RecordingTransport(eventLoop: loop)
        let session = Session(id: "s", remoteAddress: "127.0.0.1:1", transport: transport)
        for id in ["c1", "c2", "c3"] {
            first.consume(session: session, requestId: id, topics: nil, timeoutMilliseconds: 0, closeAfterReply: false)
        }
        loop.run()
        #expect(transport.written.map(\.bodyString) == ["m1", "m2", "m3"])
        #expect(transport.written.map { $0.headers["x-tag"] } == ["one", "two", "three"])
        #expect(transport.written.map(\.id) == ["c1", "c2", "c3"])
        try loop.syncShutdownGracefully()
    }

    @Test("the executor sends the replies the state machines decide: 204 naming the MQ, 404 when it is removed")
    func executorReplies() throws {
        let loop = EmbeddedEventLoop()
        let queue = memoryQueue("Q")
        let transport = RecordingTransport(eventLoop: loop)
        let session = Session(id: "s", remoteAddress: "127.0.0.1:1", transport: transport)
        queue.consume(session: session, requestId: "a", topics: nil, timeoutMilliseconds: 0, closeAfterReply: false)
        queue.consume(session: session, requestId: "b", topics: nil, timeoutMilliseconds: nil, closeAfterReply: false)
        queue.close().send()
        loop.run()
        #expect(transport.written.map(\.status) == [204, 404])
        #expect(transport.written.map(\.mq) == ["Q", "Q"] && transport.written.map(\.id) == ["a", "b"])
        #expect(transport.written.last?.bodyString == "MQ(Q) Not Found")
        try loop.syncShutdownGracefully()
    }
}
