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
        }
    }
}

extension TcpFraming {
    /// Frames one request record.
    func frame(_ record: ByteBuffer, allocator: ByteBufferAllocator) throws(TcpFramingError) -> ByteBuffer {
        var record = record
        let size = record.readableBytes
        var out = allocator.buffer(capacity: size + 4)
        switch self {
        case .newline:
            if record.readableBytesView.last == UInt8(ascii: "\n") { record.moveWriterIndex(to: record.writerIndex - 1) }
            if record.readableBytesView.contains(UInt8(ascii: "\n")) { throw .newlineInRecord }
            out.writeBuffer(&record)
            out.writeInteger(UInt8(ascii: "\n"))
        case .length2:
            guard size <= Int(UInt16.max) else { throw .tooLongForPrefix(size: size, framing: self) }
            out.writeInteger(UInt16(size), endianness: .big)
            out.writeBuffer(&record)
        case .length4:
            guard size <= Int(UInt32.max) else { throw .tooLongForPrefix(size: size, framing: self) }
            out.writeInteger(UInt32(size), endianness: .big)
            out.writeBuffer(&record)
        case .fixed(let recordSize):
            guard size <= recordSize else { throw .tooLongForFixed(size: size, recordSize: recordSize) }
            out.writeBuffer(&record)
            out.writeRepeatingByte(UInt8(ascii: " "), count: recordSize - size)
        }
        return out
    }
}

/// Writes request records with the service's framing.
final class TcpRecordEncoder: MessageToByteEncoder {
    typealias OutboundIn = ByteBuffer
    let framing: TcpFraming

    init(framing: TcpFraming) {
        self.framing = framing
    }

    func encode(data: ByteBuffer, out: inout ByteBuffer) throws {
        var framed = try framing.frame(data, allocator: ByteBufferAllocator())
        out.writeBuffer(&framed)
    }
}

/// Cuts reply records out of the byte stream, refusing records larger than `maxRecord`.
struct TcpRecordDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer
    let framing: TcpFraming
    let maxRecord: Int

    init(framing: TcpFraming, maxRecord: Int) {
        self.framing = framing
        self.maxRecord = maxRecord
    }

    /// A record was read from the bytes at hand since the decoder last ran out of them.
    private var answered = false

    /// Reads the next record. One request is in flight at a time, so bytes left over after a record in the same read
    /// answer nothing: kept, they would become the start of the next call's reply and hand that caller a wrong answer.
    /// They are an error instead (the record read stands; the connection closes).
    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if try decodeRecord(context: context, buffer: &buffer) == .continue {
            answered = true
            return .continue
        }
        defer { answered = false }
        if answered && buffer.readableBytes > 0 { throw TcpFramingError.strayBytes(count: buffer.readableBytes) }
        return .needMoreData
    }

    private func decodeRecord(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        switch framing {
        case .newline:
            guard let index = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else {
                if buffer.readableBytes > maxRecord { throw TcpFramingError.replyTooLarge(size: buffer.readableBytes, limit: maxRecord) }
                return .needMoreData
            }
            let length = index - buffer.readerIndex
            if length > maxRecord { throw TcpFramingError.replyTooLarge(size: length, limit: maxRecord) }
            var line = buffer.readSlice(length: length)!
            buffer.moveReaderIndex(forwardBy: 1)
            if line.readableBytesView.last == UInt8(ascii: "\r") { line.moveWriterIndex(to: line.writerIndex - 1) }
            context.fireChannelRead(wrapInboundOut(line))
            return .continue
        case .length2, .length4:
            let prefix = framing == .length2 ? 2 : 4
            guard buffer.readableBytes >= prefix else { return .needMoreData }
            let length = prefix == 2
                ? Int(buffer.getInteger(at: buffer.readerIndex, endianness: .big, as: UInt16.self)!)
                : Int(buffer.getInteger(at: buffer.readerIndex, endianness: .big, as: UInt32.self)!)
            if length > maxRecord { throw TcpFramingError.replyTooLarge(size: length, limit: maxRecord) }
            guard buffer.readableBytes >= prefix + length else { return .needMoreData }
            buffer.moveReaderIndex(forwardBy: prefix)
            context.fireChannelRead(wrapInboundOut(buffer.readSlice(length: length)!))
            return .continue
        case .fixed(let size):
            guard buffer.readableBytes >= size else { return .needMoreData }
            context.fireChannelRead(wrapInboundOut(buffer.readSlice(length: size)!))
            return .continue
        }
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        if buffer.readableBytes > 0 {
            throw ProxyFramingTruncated(bytes: buffer.readableBytes, framing: framing)
        }
        return .needMoreData
    }
}

/// The connection closed in the middle of a record.
struct ProxyFramingTruncated: Error, CustomStringConvertible {
    let bytes: Int
    let framing: TcpFraming
    var description: String { "the connection closed after \(bytes) bytes of an incomplete \(framing) record" }
}
