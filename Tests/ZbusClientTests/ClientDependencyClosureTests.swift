import Foundation
import Testing
import ZbusTestSupport

/// A client-only program links the protocol and the client, never the node, the store, YAML or ServiceLifecycle
/// (ARCHITECTURE.md: "A client-only program links ZbusProtocol and ZbusClient").
///
/// Checked on a real binary rather than on `Package.swift`: `zbus-example-producer` depends on `ZbusClient` alone, and
/// SwiftPM links every object file of a target's whole dependency closure into it, so a module that creeps into the
/// client's closure leaves its Swift symbols (`$s<length><Module>`) in the executable.
@Suite("Client dependency closure")
struct ClientDependencyClosureTests {
    static let forbiddenModules = ["ZbusKernel", "ZbusStore", "ZbusMQ", "Yams", "ServiceLifecycle"]
    static let requiredModules = ["ZbusProtocol", "ZbusClient"]

    static func mangledPrefix(_ module: String) -> [UInt8] { Array("$s\(module.utf8.count)\(module)".utf8) }

    @Test("the client-only example links neither the kernel, the store, Yams nor ServiceLifecycle")
    func clientOnlyBinary() throws {
        let path = URL(fileURLWithPath: ZbusProcess.binaryPath).deletingLastPathComponent()
            .appendingPathComponent("zbus-example-producer").path
        let binary = try #require(FileManager.default.contents(atPath: path), "no binary at \(path): build the tests first")
        let bytes = [UInt8](binary)
        for module in Self.requiredModules {
            // The probe would pass vacuously if symbols were stripped: the modules it must link have to show.
            #expect(Self.contains(bytes, Self.mangledPrefix(module)), "\(module) symbols missing: is the binary stripped?")
        }
        for module in Self.forbiddenModules {
            #expect(!Self.contains(bytes, Self.mangledPrefix(module)), "a client-only program links \(module)")
        }
    }

    @Test("the node binary, which does link them, shows their symbols (the probe can fail)")
    func nodeBinaryShowsThem() throws {
        let binary = try #require(FileManager.default.contents(atPath: ZbusProcess.binaryPath))
        let bytes = [UInt8](binary)
        for module in ["ZbusKernel", "ZbusMQ", "Yams", "ServiceLifecycle"] {
            #expect(Self.contains(bytes, Self.mangledPrefix(module)), "\(module) symbols not found in zbus")
        }
    }

    /// Whether `needle` occurs in `haystack` (a first-byte scan with `memchr`, then a compare: binaries are tens of
    /// megabytes).
    static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        haystack.withUnsafeBytes { hay in
            needle.withUnsafeBytes { pin in
                guard let base = hay.baseAddress, let first = pin.first, hay.count >= pin.count else { return false }
                var offset = 0
                let last = hay.count - pin.count
                while offset <= last {
                    guard let found = memchr(base + offset, Int32(first), last - offset + 1) else { return false }
                    let at = base.distance(to: UnsafeRawPointer(found))
                    if memcmp(base + at, pin.baseAddress!, pin.count) == 0 { return true }
                    offset = at + 1
                }
                return false
            }
        }
    }
}
