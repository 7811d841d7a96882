import NIOCore
import ZbusProtocol
import ZbusMQ

#if canImport(Glibc)
import Glibc
#endif

/// Runs one input through the parser, in two chunkings, and through the connection framer, and traps on any broken
/// invariant; every decoded message is also stored and delivered from its record (`StoredDelivery`), which must give
/// the bytes the parsing path gives.
///
/// The same body serves libFuzzer (`LLVMFuzzerTestOneInput`) and the replay runner (plain binary: each argument is a
/// file to replay, as libFuzzer writes crash inputs).
func fuzzOneInput(_ bytes: UnsafeRawBufferPointer) {
    let limits = MessageLimits(maxHeaderBytes: 512, maxBodyBytes: 256)
    var firstRun: [Message]?
    for chunkSize in [bytes.count, 7] where chunkSize > 0 {
        var parser = MessageParser(limits: limits)
        var buffer = ByteBuffer()
        var offset = 0
        var messages: [Message] = []
        feeding: while offset < bytes.count {
            let end = min(bytes.count, offset + chunkSize)
            buffer.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[offset..<end]))
            offset = end
            while true {
                let before = buffer.readerIndex
                do {
                    guard let message = try parser.next(&buffer) else { break }
                    precondition(buffer.readerIndex > before, "decoded a message without consuming input")
                    messages.append(message)
                    var encoded = MessageSerializer.serialize(message)
                    var again = MessageParser(limits: .default)
                    let decoded = try again.next(&encoded)
                    precondition(decoded?.headers == message.headers, "re-encoded headers differ")
                    precondition(decoded?.body == message.body, "re-encoded body differs")
                } catch {
                    precondition((400...499).contains(error.status), "non-4xx decoding error")
                    break feeding
                }
            }
        }
        if firstRun == nil { firstRun = messages }
    }

    var framer = InboundFramer(limits: limits)
    var framed = 0
    var offset = 0
    framing: while offset < bytes.count {
        let end = min(bytes.count, offset + 13)
        framer.append(ByteBuffer(bytes: UnsafeRawBufferPointer(rebasing: bytes[offset..<end])))
        offset = end
        do {
            while let message = try framer.next() {
                precondition(framed < (firstRun?.count ?? 0) && firstRun![framed].headers == message.headers,
                             "the framer cut a different message")
                framed += 1
            }
        } catch {
            break framing
        }
    }

    for message in firstRun ?? [] {
        let record = MessageSerializer.serialize(message, omittingNodeHeaders: true)
        for (requestId, close) in [(String?.none, false), ("c-1", true)] {
            var fast = ByteBuffer()
            precondition(StoredDelivery.writeFast(record: record, requestId: requestId, close: close, into: &fast), "record declined")
            var general = ByteBuffer()
            MessageSerializer.write(StoredDelivery.message(record: record, requestId: requestId, close: close), into: &general)
            precondition(fast == general, "stored delivery differs from the parsed one")
        }
    }
}

#if ZBUS_LIBFUZZER
/// libFuzzer's driver, from `libclang_rt.fuzzer_no_main` (SwiftPM owns `main` for executable targets, so the
/// fuzzer is started from ours rather than bringing its own).
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
) -> Int32

@main
struct DecoderFuzzer {
    static func main() {
        var argc = CommandLine.argc
        var argv = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in
            fuzzOneInput(UnsafeRawBufferPointer(start: data, count: size))
            return 0
        })
    }
}
#else
@main
struct DecoderFuzzReplay {
    static func main() {
        let paths = CommandLine.arguments.dropFirst()
        if paths.isEmpty {
            print("usage: zbus-fuzz-decoder FILE...   (replays inputs; build with -sanitize=fuzzer for a libFuzzer session)")
        }
        for path in paths {
            guard let file = fopen(path, "rb") else {
                print("cannot open \(path)")
                continue
            }
            var bytes: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 65536)
            while true {
                let count = fread(&chunk, 1, chunk.count, file)
                if count <= 0 { break }
                bytes += chunk[0..<count]
            }
            fclose(file)
            bytes.withUnsafeBytes { fuzzOneInput($0) }
            print("\(path): ok (\(bytes.count) bytes)")
        }
    }
}
#endif
