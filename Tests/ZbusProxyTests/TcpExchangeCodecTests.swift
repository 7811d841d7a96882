import NIOCore
import NIOEmbedded
import Testing

@testable import ZbusProxyModule

/// The `tcp` adapter's connection codec on its own, fed read by read as a socket would: a request framed, its reply
/// whole however the reads split it, and bytes that answer nothing refused.
@Suite("TCP exchange codec")
struct TcpExchangeCodecTests {
    /// A channel with the codec, and the errors it reported.
    final class Probe: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        var records: [String] = []
        var errors: [String] = []
        func channelRead(context: ChannelHandlerContext, data: NIOAny) { records.append(String(buffer: unwrapInboundIn(data))) }
        func errorCaught(context: ChannelHandlerContext, error: any Error) { errors.append("\(error)") }
        func take() -> [String] { defer { records = [] }; return records }
    }

    static func channel(_ framing: TcpFraming, maxRecord: Int = 1 << 20) throws -> (EmbeddedChannel, Probe) {
        let channel = EmbeddedChannel()
        let probe = Probe()
        try channel.pipeline.syncOperations.addHandler(TcpExchangeCodec(framing: framing, maxRecord: maxRecord))
        try channel.pipeline.syncOperations.addHandler(probe)
        return (channel, probe)
    }

    /// Writes a request; returns the bytes that went out.
    static func request(_ channel: EmbeddedChannel, _ text: String) throws -> ByteBuffer? {
        try channel.writeOutbound(ByteBuffer(string: text))
        return try channel.readOutbound(as: ByteBuffer.self)
    }

    static func length4(_ text: String) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeInteger(UInt32(text.utf8.count), endianness: .big)
        buffer.writeString(text)
        return buffer
    }

    @Test("requests are framed as the service expects")
    func requestsFramed() throws {
        let (newline, _) = try Self.channel(.newline)
        #expect(try Self.request(newline, "abc") == ByteBuffer(string: "abc\n"))
        let (fixed, _) = try Self.channel(.fixed(8))
        #expect(try Self.request(fixed, "abc") == ByteBuffer(string: "abc     "))
        let (length4, _) = try Self.channel(.length4)
        #expect(try Self.request(length4, "abc") == Self.length4("abc"))
    }

    @Test("a reply in several reads after a reply that ended exactly at the end of its read: both are read")
    func splitReplyAfterAnExactOne() throws {
        for framing in [TcpFraming.newline, .length2, .length4, .fixed(8)] {
            let (channel, probe) = try Self.channel(framing)
            _ = try Self.request(channel, "first")
            try channel.writeInbound(try framing.frame(ByteBuffer(string: "first"), allocator: channel.allocator))
            #expect(probe.take().count == 1, "\(framing)")
            _ = try Self.request(channel, "second")
            // The reply, one byte per read.
            for byte in try framing.frame(ByteBuffer(string: "second"), allocator: channel.allocator).readableBytesView {
                try channel.writeInbound(ByteBuffer(bytes: [byte]))
            }
            let read = probe.take()
            #expect(read.count == 1 && read.first?.hasPrefix("second") == true, "\(framing): \(read)")
            #expect(probe.errors.isEmpty, "\(framing): \(probe.errors)")
        }
    }

    @Test("a large length4 reply split over reads, three calls in a row")
    func largeRepliesInPieces() throws {
        let (channel, probe) = try Self.channel(.length4, maxRecord: 64 << 10)
        let big = String(repeating: "x", count: 40_000)
        for call in 0..<3 {
            _ = try Self.request(channel, "call")
            var framed = Self.length4(big + "\(call)")
            while framed.readableBytes > 0 {
                try channel.writeInbound(framed.readSlice(length: min(framed.readableBytes, 8192))!)
            }
            #expect(probe.take() == [big + "\(call)"])
        }
        #expect(probe.errors.isEmpty)
    }

    @Test("bytes after the reply in the same read: the reply is read, the stray bytes are refused, nothing more is read")
    func strayBytesInTheSameRead() throws {
        let (channel, probe) = try Self.channel(.newline)
        _ = try Self.request(channel, "q")
        try channel.writeInbound(ByteBuffer(string: "answer\nXY"))
        #expect(probe.take() == ["answer"])
        #expect(probe.errors == ["it sent 2 more bytes after its reply record, which answer nothing"])
        let (twoRecords, twoProbe) = try Self.channel(.length2)
        _ = try Self.request(twoRecords, "q")
        var both = ByteBuffer()
        both.writeInteger(UInt16(1), endianness: .big)
        both.writeString("a")
        both.writeInteger(UInt16(1), endianness: .big)
        both.writeString("b")
        try twoRecords.writeInbound(both)
        #expect(twoProbe.take() == ["a"])
        #expect(twoProbe.errors.count == 1)
        // After the refusal, nothing is read from this connection again.
        _ = try Self.request(twoRecords, "again")
        try twoRecords.writeInbound(Self.length4("late"))
        #expect(twoProbe.take().isEmpty)
    }

    @Test("bytes while no request is in flight, even a partial record: refused, never the start of the next reply")
    func bytesWhileIdle() throws {
        let (channel, probe) = try Self.channel(.length4)
        var partial = Self.length4("stale")
        try channel.writeInbound(partial.readSlice(length: 3)!)
        #expect(probe.errors == ["it sent 3 bytes while no request was in flight, which answer nothing"])
        _ = try Self.request(channel, "next")
        try channel.writeInbound(Self.length4("fresh"))
        #expect(probe.take().isEmpty)
    }

    @Test("pipelined: several records owed are read from one read, in order; one more is refused")
    func pipelinedRecords() throws {
        let (channel, probe) = try Self.channel(.length2)
        for name in ["a", "b", "c"] { _ = try Self.request(channel, name) }
        var replies = ByteBuffer()
        for name in ["A", "B"] {
            replies.writeInteger(UInt16(1), endianness: .big)
            replies.writeString(name)
        }
        replies.writeInteger(UInt16(1), endianness: .big)  // the start of the third
        try channel.writeInbound(replies)
        #expect(probe.take() == ["A", "B"])
        var rest = ByteBuffer(string: "C")
        rest.writeInteger(UInt16(1), endianness: .big)
        rest.writeString("D")  // a fourth record, for no request
        try channel.writeInbound(rest)
        #expect(probe.take() == ["C"])
        #expect(probe.errors == ["it sent 3 more bytes after its reply record, which answer nothing"])
    }

    @Test("five pipelined replies split at every byte boundary, and fed byte by byte: five records in order, nothing refused")
    func pipelinedRepliesSplitEverywhere() throws {
        for framing in [TcpFraming.newline, .length2, .length4, .fixed(8)] {
            let names = ["one", "two", "", "four", "5"]
            var all = ByteBuffer()
            for name in names {
                var framed = try framing.frame(ByteBuffer(string: name), allocator: ByteBufferAllocator())
                all.writeBuffer(&framed)
            }
            let expected = names.map { if case .fixed = framing { $0 + String(repeating: " ", count: 8 - $0.utf8.count) } else { $0 } }
            var splits: [[ByteBuffer]] = (0...all.readableBytes).map { cut in
                [all.getSlice(at: 0, length: cut)!, all.getSlice(at: cut, length: all.readableBytes - cut)!]
            }
            splits.append((0..<all.readableBytes).map { all.getSlice(at: $0, length: 1)! })
            for reads in splits {
                let (channel, probe) = try Self.channel(framing)
                for name in names { _ = try Self.request(channel, name) }
                // (A socket never reads 0 bytes.)
                for read in reads where read.readableBytes > 0 { try channel.writeInbound(read) }
                #expect(probe.take() == expected, "\(framing) \(reads.map(\.readableBytes))")
                #expect(probe.errors.isEmpty, "\(framing): \(probe.errors)")
            }
        }
    }

    @Test("a reply larger than max_record is refused before it is all read")
    func replyTooLarge() throws {
        let (channel, probe) = try Self.channel(.newline, maxRecord: 16)
        _ = try Self.request(channel, "q")
        try channel.writeInbound(ByteBuffer(string: String(repeating: "y", count: 17)))
        #expect(probe.errors.first?.contains("exceeds max_record (16 bytes)") == true, "\(probe.errors)")
        let (prefixed, prefixedProbe) = try Self.channel(.length4, maxRecord: 16)
        _ = try Self.request(prefixed, "q")
        var head = ByteBuffer()
        head.writeInteger(UInt32(1 << 30), endianness: .big)
        try prefixed.writeInbound(head)
        #expect(prefixedProbe.errors.first?.contains("exceeds max_record") == true, "\(prefixedProbe.errors)")
    }

    @Test("a connection that closes in the middle of a reply: the truncation is reported")
    func truncatedAtClose() throws {
        let (channel, probe) = try Self.channel(.length4)
        _ = try Self.request(channel, "q")
        var partial = Self.length4("whole record")
        try channel.writeInbound(partial.readSlice(length: 6)!)
        _ = try channel.finish()
        #expect(probe.errors == ["the connection closed after 6 bytes of an incomplete length4 record"])
    }
}
