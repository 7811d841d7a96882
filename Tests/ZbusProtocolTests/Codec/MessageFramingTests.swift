import NIOCore
import NIOEmbedded
import Testing
@testable import ZbusProtocol

@Suite("InboundFramer and OutboundBatch")
struct MessageFramingTests {
    static let stream =
        "GET / HTTP/1.1\r\ncmd: test\r\nid: 1\r\n\r\n"
        + "POST /q HTTP/1.1\r\nCmd: produce\r\nMQ: Q\r\nContent-Length: 5\r\n\r\nhello"
        + "HTTP/1.1 200 OK\r\ncmd: route\r\nrecver: r\r\ncontent-length: 0\r\n\r\n"
        + "GET /?cmd=test HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"

    private static func frame(_ chunks: [ByteBuffer], limits: MessageLimits = .default) throws -> [Message] {
        var framer = InboundFramer(limits: limits)
        var out: [Message] = []
        for chunk in chunks {
            framer.append(chunk)
            while let message = try framer.next() { out.append(message) }
        }
        return out
    }

    @Test("the same four messages come out whatever byte the input is split at, and one byte at a time")
    func splitAtEveryByte() throws {
        let bytes = ByteBuffer(string: Self.stream)
        let whole = try Self.frame([bytes])
        #expect(whole.map(\.cmd) == ["test", "produce", "route", nil])
        for split in 1..<bytes.readableBytes {
            let parts = [bytes.getSlice(at: 0, length: split)!, bytes.getSlice(at: split, length: bytes.readableBytes - split)!]
            let messages = try Self.frame(parts)
            #expect(messages.map(\.cmd) == whole.map(\.cmd), "split at \(split)")
            #expect(messages.count == 4 && messages[1].bodyString == "hello", "split at \(split)")
        }
        let single = (0..<bytes.readableBytes).map { bytes.getSlice(at: $0, length: 1)! }
        let messages = try Self.frame(single)
        #expect(messages.map(\.id) == whole.map(\.id))
        #expect(messages[1].bodyString == "hello")
    }

    @Test("a long pipelined stream in odd-sized reads: every message, in order")
    func longPipelinedStream() throws {
        var text = ""
        for index in 0..<5_000 { text += "POST / HTTP/1.1\r\ncmd: produce\r\nid: \(index)\r\ncontent-length: 3\r\n\r\nabc" }
        let bytes = ByteBuffer(string: text)
        var framer = InboundFramer(limits: .default)
        var ids: [String] = []
        var offset = 0
        var step = 1
        while offset < bytes.readableBytes {
            let length = min(step, bytes.readableBytes - offset)
            framer.append(bytes.getSlice(at: offset, length: length)!)
            while let message = try framer.next() { ids.append(message.id ?? "?") }
            offset += length
            step = step % 997 + 13  // read sizes that cut messages everywhere
        }
        #expect(ids == (0..<5_000).map(String.init))
    }

    @Test("input that always ends mid-message does not keep its consumed prefix: the held buffer stays bounded")
    func heldInputIsCompacted() throws {
        let message = "POST / HTTP/1.1\r\ncmd: produce\r\ncontent-length: 3\r\n\r\nabc"
        let chunk = String(repeating: message, count: 500)
        let half = message.utf8.count / 2
        var framer = InboundFramer(limits: .default)
        // Every read carries the second half of the previous read's last message, 499 whole ones and the first half
        // of the next: the buffer is never drained, so only compaction keeps it from growing.
        framer.append(ByteBuffer(string: String(chunk.utf8.prefix(chunk.utf8.count - half))!))
        var count = 0
        var largest = 0
        for _ in 0..<20 {
            while try framer.next() != nil { count += 1 }
            largest = max(largest, framer.heldFootprint)
            framer.append(ByteBuffer(string: String(message.utf8.suffix(half))! + String(chunk.utf8.prefix(chunk.utf8.count - half))!))
        }
        while try framer.next() != nil { count += 1 }
        #expect(count == 499 + 20 * 500)
        #expect(largest <= 2 * chunk.utf8.count, "held \(largest) bytes for reads of \(chunk.utf8.count)")
    }

    @Test("a framing error is thrown once and the held input is dropped")
    func errorDropsInput() throws {
        var framer = InboundFramer(limits: MessageLimits(maxHeaderBytes: 1024, maxBodyBytes: 8))
        framer.append(ByteBuffer(string: "GET / HTTP/1.1\r\ncontent-length: 9\r\n\r\n123456789"))
        #expect(throws: MessageDecodingError.self) { try framer.next() }
        #expect(try framer.next() == nil)
    }

    @Test("an acknowledgement is written byte for byte as the equivalent reply message", arguments: [
        (String?.none, String?.none, Int64(0)), ("a1", "Q", 1_763_745_384_123), (nil, "MQ-with-a-long-name-over-fifteen", 7),
        ("id-longer-than-fifteen-bytes-0123456789", nil, 9_999_999_999_999),
    ])
    func acknowledgementBytes(id: String?, mq: String?, time: Int64) {
        var fast = ByteBuffer()
        MessageSerializer.writeAcknowledgement(id: id, mq: mq, time: time, into: &fast)
        var general = ByteBuffer()
        MessageSerializer.write(Outgoing.acknowledgement(id: id, mq: mq, time: time).message, into: &general)
        #expect(String(buffer: fast) == String(buffer: general))
    }

    /// Records what reaches the channel's head and closes the channel when asked to by a flush, the way a socket
    /// whose peer vanished does, re-entering the handler that flushed.
    private final class BatchHandler: ChannelOutboundHandler {
        typealias OutboundIn = ByteBuffer
        let batch: OutboundBatch
        var context: ChannelHandlerContext?
        init(allocator: ByteBufferAllocator) { batch = OutboundBatch(allocator: allocator) }
        func handlerAdded(context: ChannelHandlerContext) { self.context = context }
        func handlerRemoved(context: ChannelHandlerContext) { batch.discard() }
    }

    @Test("messages between flushes leave as one buffer; a large body follows its head uncopied, in order")
    func batching() throws {
        let channel = EmbeddedChannel()
        let handler = BatchHandler(allocator: channel.allocator)
        try channel.pipeline.syncOperations.addHandler(handler)
        let context = try #require(handler.context)
        let first = Message(status: 200, headers: Headers([("id", "1")]), body: ByteBuffer(string: "OK"))
        let second = Message(status: 204, headers: Headers([("id", "2")]))
        handler.batch.append(first, context: context)
        handler.batch.append(second, context: context)
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil, "nothing leaves before the flush")
        handler.batch.flush(context: context)
        let batch = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(String(buffer: batch) == "HTTP/1.1 200 OK\r\nid: 1\r\ncontent-length: 2\r\nconnection: Keep-Alive\r\n\r\nOK"
            + "HTTP/1.1 204 No Content\r\nid: 2\r\ncontent-length: 0\r\nconnection: Keep-Alive\r\n\r\n")
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)

        let big = ByteBuffer(repeating: 0x61, count: OutboundBatch.inlineBodyLimit + 1)
        handler.batch.append(second, context: context)
        handler.batch.append(Message(status: 200, body: big), context: context)
        handler.batch.append(first, context: context)
        handler.batch.flush(context: context)
        let before = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(String(buffer: before).hasPrefix("HTTP/1.1 204"))
        let head = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(String(buffer: head).hasSuffix("content-length: \(big.readableBytes)\r\nconnection: Keep-Alive\r\n\r\n"))
        #expect(try channel.readOutbound(as: ByteBuffer.self) == big)
        let after = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(String(buffer: after).hasSuffix("\r\n\r\nOK"))
        _ = try channel.finish()
    }

    @Test("flushAndClose writes everything, then closes; discarding from inside the close is safe")
    func flushAndClose() throws {
        let channel = EmbeddedChannel()
        let handler = BatchHandler(allocator: channel.allocator)
        try channel.pipeline.syncOperations.addHandler(handler)
        let context = try #require(handler.context)
        handler.batch.append(Message(status: 400, body: ByteBuffer(string: "bad")), context: context)
        handler.batch.flushAndClose(context: context)
        let reply = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(String(buffer: reply).hasPrefix("HTTP/1.1 400"))
        #expect(!channel.isActive)
        #expect(handler.batch.isEmpty)
    }
}
