import NIOCore
import ZbusKernel

#if canImport(Glibc)
import Glibc
#endif

/// Runs one input through the parser, in two chunkings, and traps on any broken invariant.
///
/// The same body serves libFuzzer (`LLVMFuzzerTestOneInput`) and the replay runner (plain binary: each argument is a
/// file to replay, as libFuzzer writes crash inputs).
func fuzzOneInput(_ bytes: UnsafeRawBufferPointer) {
    for chunkSize in [bytes.count, 7] where chunkSize > 0 {
        var parser = MessageParser(limits: MessageLimits(maxHeaderBytes: 512, maxBodyBytes: 256))
        var buffer = ByteBuffer()
        var offset = 0
        feeding: while offset < bytes.count {
            let end = min(bytes.count, offset + chunkSize)
            buffer.writeBytes(UnsafeRawBufferPointer(rebasing: bytes[offset..<end]))
            offset = end
            while true {
                let before = buffer.readerIndex
                do {
                    guard let message = try parser.next(&buffer) else { break }
                    precondition(buffer.readerIndex > before, "decoded a message without consuming input")
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
