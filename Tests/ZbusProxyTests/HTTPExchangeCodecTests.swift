import NIOCore
import NIOEmbedded
import Testing
import ZbusKernel

@testable import ZbusProxyModule

/// The `http` adapter's connection codec on its own, fed read by read: responses answer the requests written, in
/// order, one at a time or pipelined; bytes beyond the responses owed close the connection.
@Suite("HTTP exchange codec")
struct HTTPExchangeCodecTests {
    final class Probe: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = Message
        var replies: [String] = []
        var errors: [String] = []
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let reply = unwrapInboundIn(data)
            replies.append("\(reply.status ?? 0) \(reply.bodyString)")
        }
        func errorCaught(context: ChannelHandlerContext, error: any Error) { errors.append("\(error)") }
    }

    static func channel() throws -> (EmbeddedChannel, Probe) {
        let channel = EmbeddedChannel()
        let probe = Probe()
        let encoding = HTTPRequestEncoding(host: "127.0.0.1:1", basePath: "")
        try channel.pipeline.syncOperations.addHandler(HTTPExchangeCodec(encoding: encoding, maxReply: 1 << 20))
        try channel.pipeline.syncOperations.addHandler(probe)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return (channel, probe)
    }

    static func request(_ channel: EmbeddedChannel, method: String = "GET", path: String) throws {
        var message = Message()
        message.headers["http-method"] = method
        message.headers["path"] = path
        try channel.writeOutbound(message)
        _ = try channel.readOutbound(as: ByteBuffer.self)
    }

    @Test("called directly (as a pipelined connection does): requests written as through the pipeline, replies to the sink only, in order")
    func directExchange() throws {
        let (channel, probe) = try Self.channel()
        let codec = try channel.pipeline.syncOperations.handler(type: HTTPExchangeCodec.self)
        var sunk: [String] = []
        codec.replySink = { sunk.append("\($0.status ?? 0) \($0.bodyString)") }
        for path in ["/a", "/b"] {
            var message = Message()
            message.headers["path"] = path
            codec.writeRequest(message)
        }
        channel.flush()
        let written = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(String(buffer: written).hasPrefix("GET /a HTTP/1.1\r\nhost: 127.0.0.1:1\r\n"))
        let second = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(String(buffer: second).hasPrefix("GET /b HTTP/1.1\r\n"))
        try channel.writeInbound(ByteBuffer(string:
            "HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nA" + "HTTP/1.1 202 Accepted\r\ncontent-length: 1\r\n\r\nB"))
        #expect(sunk == ["200 A", "202 B"])
        #expect(probe.replies.isEmpty, "nothing goes down the pipeline while a sink is set")
        #expect(probe.errors.isEmpty)
        _ = try channel.finish()
        #expect(codec.replySink == nil, "a codec out of its pipeline lets go of its sink")
    }

    @Test("three pipelined requests, a HEAD in the middle, answered in one read: three replies in order")
    func pipelinedResponsesInOneRead() throws {
        let (channel, probe) = try Self.channel()
        try Self.request(channel, path: "/a")
        try Self.request(channel, method: "HEAD", path: "/b")
        try Self.request(channel, path: "/c")
        // The HEAD's response says content-length 5 and has no body: the next response follows at once.
        try channel.writeInbound(ByteBuffer(string:
            "HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nA"
            + "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"
            + "HTTP/1.1 201 Created\r\ncontent-length: 1\r\n\r\nC"))
        #expect(probe.replies == ["200 A", "200 ", "201 C"])
        #expect(probe.errors.isEmpty)
        #expect(channel.isActive)
    }

    @Test("a pipelined response split across reads, the next one's start in the same read as the end of the first")
    func pipelinedResponsesAcrossReads() throws {
        let (channel, probe) = try Self.channel()
        try Self.request(channel, path: "/a")
        try Self.request(channel, path: "/b")
        try channel.writeInbound(ByteBuffer(string: "HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nAA"))
        try channel.writeInbound(ByteBuffer(string: "AHTTP/1.1 200 OK\r\ncontent-le"))
        #expect(probe.replies == ["200 AAA"])
        try channel.writeInbound(ByteBuffer(string: "ngth: 2\r\n\r\nBB"))
        #expect(probe.replies == ["200 AAA", "200 BB"])
        #expect(channel.isActive)
    }

    @Test("one response more than the requests written: the answers owed stand, the connection closes")
    func moreResponsesThanRequests() throws {
        let (channel, probe) = try Self.channel()
        try Self.request(channel, path: "/a")
        try Self.request(channel, path: "/b")
        try channel.writeInbound(ByteBuffer(string:
            "HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nA"
            + "HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nB"
            + "HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nX"))
        #expect(probe.replies == ["200 A", "200 B"])
        #expect(!channel.isActive)
    }

    @Test("five pipelined responses (a HEAD, a chunked one with extensions and trailers, one after a 100 Continue, a 204) split at every byte boundary, and fed byte by byte: five replies in order, the connection kept")
    func pipelinedResponsesSplitEverywhere() throws {
        let all = ByteBuffer(string:
            "HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nA"
            + "HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\n"
            + "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\nC\r\n2;x=1\r\nCC\r\n0\r\nx-trailer: t\r\n\r\n"
            + "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\ncontent-length: 1\n\nD"
            + "HTTP/1.1 204 No Content\r\n\r\n")
        var splits: [[ByteBuffer]] = (0...all.readableBytes).map { cut in
            [all.getSlice(at: 0, length: cut)!, all.getSlice(at: cut, length: all.readableBytes - cut)!]
        }
        splits.append((0..<all.readableBytes).map { all.getSlice(at: $0, length: 1)! })
        for reads in splits {
            let (channel, probe) = try Self.channel()
            try Self.request(channel, path: "/a")
            try Self.request(channel, method: "HEAD", path: "/b")
            try Self.request(channel, path: "/c")
            try Self.request(channel, path: "/d")
            try Self.request(channel, method: "DELETE", path: "/e")
            for read in reads { try channel.writeInbound(read) }
            #expect(probe.replies == ["200 A", "200 ", "200 CCC", "201 D", "204 "], "\(reads.map(\.readableBytes))")
            #expect(probe.errors.isEmpty, "\(probe.errors)")
            #expect(channel.isActive)
        }
    }
}
