import Testing

@testable import ZbusProtocol

@Suite("ASCIIBytes")
struct ASCIIBytesTests {
    /// The definition `hasControlBytes` must agree with: RFC 9110 5.5, a control byte other than a tab, or DEL.
    private static func byteByByte(_ bytes: [UInt8]) -> Bool {
        bytes.contains { ($0 < 0x20 && $0 != 0x09) || $0 == 0x7F }
    }

    @Test("control bytes in a value: every byte value at every place of values 0 to 24 bytes long, among ASCII and UTF-8 bytes")
    func controlBytesEverywhere() {
        // Backgrounds that exercise the word test's edges: plain text, tabs (allowed, yet flagged by the word test),
        // bytes just above the limits (0x20, 0x7E, 0x80) and UTF-8 bytes (the high bit set).
        let backgrounds: [UInt8] = [UInt8(ascii: "a"), 0x09, 0x20, 0x7E, 0x80, 0xFF, 0xC3]
        var checked = 0
        for background in backgrounds {
            for length in 0...24 {
                var value = [UInt8](repeating: background, count: length)
                #expect(value.withUnsafeBytes { ASCIIBytes.hasControlBytes($0) } == Self.byteByByte(value))
                for place in 0..<length {
                    for byte in UInt8.min...UInt8.max {
                        value[place] = byte
                        let found = value.withUnsafeBytes { ASCIIBytes.hasControlBytes($0) }
                        if found != Self.byteByByte(value) {
                            Issue.record("byte \(byte) at \(place) of \(length) among \(background): \(found)")
                        }
                        checked += 1
                    }
                    value[place] = background
                }
            }
        }
        #expect(checked > 300_000)
    }

    @Test("a value read from the middle of a buffer: bytes around it are not looked at")
    func slices() {
        let bytes: [UInt8] = [0x00] + Array("a value of some length".utf8) + [0x0A]
        bytes.withUnsafeBytes { all in
            #expect(ASCIIBytes.hasControlBytes(all))
            #expect(!ASCIIBytes.hasControlBytes(UnsafeRawBufferPointer(rebasing: all[1..<(all.count - 1)])))
            #expect(ASCIIBytes.hasControlBytes(UnsafeRawBufferPointer(rebasing: all[1...])))
        }
    }

    @Test("a string's UTF-8 bytes read in place: native, small, empty and bridged-like substrings alike")
    func utf8InPlace() {
        for text in ["", "id", "a header value longer than fifteen bytes", "é ü ✓", String("xx-sub-xx".dropFirst(3).dropLast(3))] {
            #expect(ASCIIBytes.withUTF8(of: text) { Array($0) } == Array(text.utf8))
        }
    }
}
