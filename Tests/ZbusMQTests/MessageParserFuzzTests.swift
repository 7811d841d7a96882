import Foundation
import NIOCore
import Testing
@testable import ZbusProtocol
@testable import ZbusMQ
import ZbusTestSupport

/// Generates inputs around the zbus grammar: valid messages, then mutated (bytes flipped, inserted, deleted,
/// duplicated, cut) and fed in random chunk sizes.
enum FuzzInputs {
    static let seeds: [String] = [
        "GET / HTTP/1.1\r\ncmd: test\r\nid: 1\r\n\r\n",
        "POST / HTTP/1.1\r\ncmd: produce\r\nmq: Q\r\ncontent-length: 5\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\ncmd: route\r\nrecver: x\r\ncontent-length: 3\r\n\r\nabc",
        "GET /?cmd=consume&mq=Q HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
        "GET /Q/mod/plus?1,2 HTTP/1.1\r\nHost: a\r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
    ]
    static let tokens: [String] = ["\r\n", "\r\n\r\n", ":", " ", "content-length: ", "99999999999", "-1", "HTTP/1.1", "\u{0}", "\u{7F}", "ü", "\t"]

    static func make(_ rng: inout SplitMix64) -> [UInt8] {
        var bytes: [UInt8] = []
        for _ in 0..<Int.random(in: 1...3, using: &rng) {
            bytes += Array(seeds.randomElement(using: &rng)!.utf8)
        }
        if Int.random(in: 0..<10, using: &rng) == 0 {
            return (0..<Int.random(in: 0...300, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        }
        for _ in 0..<Int.random(in: 0...6, using: &rng) where !bytes.isEmpty {
            let position = Int.random(in: 0..<bytes.count, using: &rng)
            switch Int.random(in: 0..<6, using: &rng) {
            case 0: bytes[position] ^= UInt8.random(in: 1...255, using: &rng)
            case 1: bytes.insert(UInt8.random(in: 0...255, using: &rng), at: position)
            case 2: bytes.remove(at: position)
            case 3: bytes.insert(contentsOf: Array(tokens.randomElement(using: &rng)!.utf8), at: position)
            case 4: bytes = Array(bytes[..<position])
            default:
                let end = min(bytes.count, position + Int.random(in: 1...20, using: &rng))
                bytes.insert(contentsOf: bytes[position..<end], at: position)
            }
        }
        return bytes
    }
}

@Suite("Parsing, framing and stored delivery fuzz")
struct MessageParserFuzzTests {
    /// Feeds `bytes` in random chunks; checks that every call makes progress or asks for more, and that whatever
    /// decodes re-encodes into something that decodes to the same message. Then checks that the connection framer
    /// (another chunking) cuts the same messages, and that each one, stored and delivered from its record without
    /// parsing (`StoredDelivery`), gives the bytes the parsing path gives.
    static func check(_ bytes: [UInt8], rng: inout SplitMix64) {
        let limits = MessageLimits(maxHeaderBytes: 256, maxBodyBytes: 64)
        var parser = MessageParser(limits: limits)
        var buffer = ByteBuffer()
        var offset = 0
        var decoded: [Message] = []
        var failed = false
        feeding: while offset < bytes.count {
            let chunk = min(bytes.count - offset, Int.random(in: 1...64, using: &rng))
            buffer.writeBytes(bytes[offset..<(offset + chunk)])
            offset += chunk
            while true {
                let before = buffer.readerIndex
                let message: Message?
                do {
                    message = try parser.next(&buffer)
                } catch {
                    #expect((400...499).contains(error.status))
                    failed = true
                    break feeding
                }
                guard let message else { break }
                #expect(buffer.readerIndex > before, "a decoded message must consume input")
                decoded.append(message)
                var encoded = MessageSerializer.serialize(message)
                var again = MessageParser(limits: .default)
                let reparsed = try? again.next(&encoded)
                #expect(reparsed?.headers == message.headers)
                #expect(reparsed?.body?.readableBytes ?? 0 == message.body?.readableBytes ?? 0)
            }
        }

        var framer = InboundFramer(limits: limits)
        var framed: [Message] = []
        var framerFailed = false
        offset = 0
        framing: while offset < bytes.count {
            let chunk = min(bytes.count - offset, Int.random(in: 1...200, using: &rng))
            framer.append(ByteBuffer(bytes: bytes[offset..<(offset + chunk)]))
            offset += chunk
            do {
                while let message = try framer.next() { framed.append(message) }
            } catch {
                framerFailed = true
                break framing
            }
        }
        #expect(framerFailed == failed)
        #expect(framed.count == decoded.count)
        for (one, other) in zip(framed, decoded) {
            #expect(one.headers == other.headers && one.body == other.body && one.startLine == other.startLine)
        }

        for message in decoded {
            let record = MessageSerializer.serialize(message, omittingNodeHeaders: true)
            var fast = ByteBuffer()
            let requestId: String? = Bool.random(using: &rng) ? "c-\(rng.next() % 1000)" : nil
            let close = Bool.random(using: &rng)
            #expect(StoredDelivery.writeFast(record: record, requestId: requestId, close: close, into: &fast))
            var general = ByteBuffer()
            MessageSerializer.write(StoredDelivery.message(record: record, requestId: requestId, close: close), into: &general)
            #expect(fast == general, "delivery of \(String(buffer: record).debugDescription)")
        }
    }

    /// 100,000 inputs by default; `ZBUS_FUZZ_ITERATIONS` and `ZBUS_FUZZ_SEED` run a longer or different session.
    @Test("100,000 generated inputs: no crash, no hang, only 4xx errors, round trips hold")
    func fuzz() {
        let environment = ProcessInfo.processInfo.environment
        let iterations = environment["ZBUS_FUZZ_ITERATIONS"].flatMap(Int.init) ?? 100_000
        var rng = SplitMix64(state: environment["ZBUS_FUZZ_SEED"].flatMap(UInt64.init) ?? 0x5EED_2B05)
        for _ in 0..<iterations {
            let input = FuzzInputs.make(&rng)
            Self.check(input, rng: &rng)
        }
    }
}
