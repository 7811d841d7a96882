import NIOCore

/// How a legacy TCP service delimits its records.
public enum TcpFraming: Sendable, Equatable, CustomStringConvertible {
    /// One record per line, ended by `\n` (a trailing `\r` is dropped from replies).
    case newline
    /// A 2-byte big-endian length, then that many bytes.
    case length2
    /// A 4-byte big-endian length, then that many bytes.
    case length4
    /// Records of exactly this many bytes; shorter requests are padded with spaces.
    case fixed(Int)

    /// The YAML names: `newline`, `length2`, `length4`, `fixed` (with `record_size`).
    public static let names = ["newline", "length2", "length4", "fixed"]

    /// The YAML name.
    public var description: String {
        switch self {
        case .newline: return "newline"
        case .length2: return "length2"
        case .length4: return "length4"
        case .fixed(let size): return "fixed(\(size))"
        }
    }
}

/// Why a record could not be framed or read.
enum TcpFramingError: Error, CustomStringConvertible {
    case newlineInRecord
    case tooLongForPrefix(size: Int, framing: TcpFraming)
    case tooLongForFixed(size: Int, recordSize: Int)
    case replyTooLarge(size: Int, limit: Int)
    case strayBytes(count: Int)
    case unsolicited(count: Int)

    var description: String {
        switch self {
        case .newlineInRecord:
            return "the body contains a newline, which newline framing cannot carry inside one record"
        case .tooLongForPrefix(let size, let framing):
            return "a record of \(size) bytes does not fit \(framing) framing"
        case .tooLongForFixed(let size, let recordSize):
            return "a record of \(size) bytes is longer than the fixed record size \(recordSize)"
        case .replyTooLarge(let size, let limit):
            return "a reply record of at least \(size) bytes exceeds max_record (\(limit) bytes)"
        case .strayBytes(let count):
            return "it sent \(count) more bytes after its reply record, which answer nothing"
        case .unsolicited(let count):
            return "it sent \(count) bytes while no request was in flight, which answer nothing"
        }
    }
}

extension TcpFraming {
    /// Why `record` cannot be sent with this framing, or `nil`: checked before anything is sent (a 400 for the caller),
    /// without framing it.
    func refusal(of record: ByteBuffer) -> TcpFramingError? {
        let size = record.readableBytes
        switch self {
        case .newline:
            // One trailing newline is the record's end, written once; another inside would end it early.
            let view = record.readableBytesView
            return view.dropLast(view.last == UInt8(ascii: "\n") ? 1 : 0).contains(UInt8(ascii: "\n")) ? .newlineInRecord : nil
        case .length2:
            return size <= Int(UInt16.max) ? nil : .tooLongForPrefix(size: size, framing: self)
        case .length4:
            return size <= Int(UInt32.max) ? nil : .tooLongForPrefix(size: size, framing: self)
        case .fixed(let recordSize):
            return size <= recordSize ? nil : .tooLongForFixed(size: size, recordSize: recordSize)
        }
    }

    /// Frames one request record.
    func frame(_ record: ByteBuffer, allocator: ByteBufferAllocator) throws(TcpFramingError) -> ByteBuffer {
        if let refusal = refusal(of: record) { throw refusal }
        var record = record
        let size = record.readableBytes
        var out = allocator.buffer(capacity: size + 4)
        switch self {
        case .newline:
            if record.readableBytesView.last == UInt8(ascii: "\n") { record.moveWriterIndex(to: record.writerIndex - 1) }
            out.writeBuffer(&record)
            out.writeInteger(UInt8(ascii: "\n"))
        case .length2:
            out.writeInteger(UInt16(size), endianness: .big)
            out.writeBuffer(&record)
        case .length4:
            out.writeInteger(UInt32(size), endianness: .big)
            out.writeBuffer(&record)
        case .fixed(let recordSize):
            out.writeBuffer(&record)
            out.writeRepeatingByte(UInt8(ascii: " "), count: recordSize - size)
        }
        return out
    }
}

extension TcpFraming {
    /// Cuts the next reply record out of `buffer`, or returns nil when its end has not come yet. A record (or the
    /// unended start of a line) larger than `maxRecord` is refused as soon as that is known.
    func nextRecord(from buffer: inout ByteBuffer, maxRecord: Int) throws(TcpFramingError) -> ByteBuffer? {
        switch self {
        case .newline:
            guard let index = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else {
                if buffer.readableBytes > maxRecord { throw .replyTooLarge(size: buffer.readableBytes, limit: maxRecord) }
                return nil
            }
            let length = index - buffer.readerIndex
            if length > maxRecord { throw .replyTooLarge(size: length, limit: maxRecord) }
            var line = buffer.readSlice(length: length)!
            buffer.moveReaderIndex(forwardBy: 1)
            if line.readableBytesView.last == UInt8(ascii: "\r") { line.moveWriterIndex(to: line.writerIndex - 1) }
            return line
        case .length2, .length4:
            let prefix = self == .length2 ? 2 : 4
            guard buffer.readableBytes >= prefix else { return nil }
            let length = prefix == 2
                ? Int(buffer.getInteger(at: buffer.readerIndex, endianness: .big, as: UInt16.self)!)
                : Int(buffer.getInteger(at: buffer.readerIndex, endianness: .big, as: UInt32.self)!)
            if length > maxRecord { throw .replyTooLarge(size: length, limit: maxRecord) }
            guard buffer.readableBytes >= prefix + length else { return nil }
            buffer.moveReaderIndex(forwardBy: prefix)
            return buffer.readSlice(length: length)!
        case .fixed(let size):
            guard buffer.readableBytes >= size else { return nil }
            return buffer.readSlice(length: size)!
        }
    }
}

/// A `tcp` adapter connection's codec: frames each request record it writes, and reads the reply records that answer
/// them, one each, in order (one request in flight, or several when the adapter pipelines). Bytes beyond the replies
/// owed answer nothing: bytes while no request is in flight, and bytes left after the last reply owed in the same
/// read. Kept, they would become the start of the next call's reply and hand that caller a wrong answer; they are an
/// error instead (the replies already read stand) and the connection is not used again.
final class TcpExchangeCodec: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let framing: TcpFraming
    private let maxRecord: Int
    /// The start of a reply record, waiting for the rest (bounded by `maxRecord` and the framing's prefix).
    private var unread: ByteBuffer?
    /// Requests written whose replies have not come yet.
    private var owed = 0
    /// Bytes that answer nothing came, or a reply could not be read: whatever else comes is dropped.
    private var done = false

    init(framing: TcpFraming, maxRecord: Int) {
        self.framing = framing
        self.maxRecord = maxRecord
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        do {
            let framed = try framing.frame(unwrapOutboundIn(data), allocator: context.channel.allocator)
            owed += 1
            context.write(wrapOutboundOut(framed), promise: promise)
        } catch {
            promise?.fail(error)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !done else { return }
        var input = unwrapInboundIn(data)
        guard owed > 0 else {
            fail(TcpFramingError.unsolicited(count: input.readableBytes), context: context)
            return
        }
        if var unread = unread.take() {
            unread.writeBuffer(&input)
            input = unread
        }
        // Only requests written before these bytes came can be answered by them, whatever is written meanwhile.
        var answerable = owed
        do {
            while answerable > 0, let record = try framing.nextRecord(from: &input, maxRecord: maxRecord) {
                answerable -= 1
                owed -= 1
                context.fireChannelRead(wrapInboundOut(record))
                if done { return }
            }
        } catch {
            fail(error, context: context)
            return
        }
        guard input.readableBytes > 0 else { return }
        if answerable == 0 {
            fail(TcpFramingError.strayBytes(count: input.readableBytes), context: context)
        } else {
            input.discardReadBytes()
            unread = input
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !done, let unread, unread.readableBytes > 0 {
            fail(ProxyFramingTruncated(bytes: unread.readableBytes, framing: framing), context: context)
        }
        context.fireChannelInactive()
    }

    private func fail(_ error: any Error, context: ChannelHandlerContext) {
        done = true
        unread = nil
        context.fireErrorCaught(error)
    }
}

/// The connection closed in the middle of a record.
struct ProxyFramingTruncated: Error, CustomStringConvertible {
    let bytes: Int
    let framing: TcpFraming
    var description: String { "the connection closed after \(bytes) bytes of an incomplete \(framing) record" }
}
