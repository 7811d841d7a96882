import Testing
@testable import ZbusStore

@Suite("QueueStore: CRC-32C")
struct QueueStoreCRC32CTests {
    /// The bit-at-a-time definition, to check the sliced tables against.
    static func reference(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        }
        return ~crc
    }

    @Test func knownVectors() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(CRC32C.checksum([]) == 0)
        // RFC 3720 (iSCSI), appendix B.4.
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
        #expect(CRC32C.checksum((0..<32).map { UInt8($0) }) == 0x46DD_794E)
        #expect(CRC32C.checksum((0..<32).reversed().map { UInt8($0) }) == 0x113F_DB5C)
        #expect(CRC32C.checksum(Array("The quick brown fox jumps over the lazy dog".utf8)) == 0x2262_0404)
    }

    @Test func slicedMatchesReferenceAtEveryLengthAndAlignment() {
        var generator = SystemRandomNumberGenerator()
        let data = (0..<300).map { _ in UInt8.random(in: 0...255, using: &generator) }
        for start in 0..<9 {
            for end in stride(from: start, through: data.count, by: 7) {
                let slice = Array(data[start..<end])
                let sliced = data.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[start..<end])) }
                #expect(sliced == Self.reference(slice), "bytes \(start)..<\(end)")
            }
        }
    }

    @Test("the software fold (the path without a CRC instruction) matches the reference and the path in use")
    func softwareMatchesReferenceAndHardware() {
        #if arch(x86_64)
        #expect(CRC32C.usesHardware, "every x86-64 CPU since 2008 has SSE 4.2; without it this test compares the software fold with itself")
        #endif
        var generator = SystemRandomNumberGenerator()
        let data = (0..<300).map { _ in UInt8.random(in: 0...255, using: &generator) }
        for start in 0..<9 {
            for end in stride(from: start, through: data.count, by: 5) {
                let software = data.withUnsafeBytes { CRC32C.softwareChecksum(UnsafeRawBufferPointer(rebasing: $0[start..<end])) }
                let inUse = data.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[start..<end])) }
                #expect(software == Self.reference(Array(data[start..<end])), "bytes \(start)..<\(end)")
                #expect(software == inUse, "bytes \(start)..<\(end), hardware: \(CRC32C.usesHardware)")
            }
        }
    }

    @Test func streamingEqualsOneShot() {
        let data = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        for split in [0, 1, 7, 8, 9, 4_095, 9_999, 10_000] {
            var crc = CRC32C()
            crc.update(Array(data[0..<split]))
            crc.update(Array(data[split...]))
            #expect(crc.value == CRC32C.checksum(data), "split at \(split)")
        }
    }
}
