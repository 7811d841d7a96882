import Logging
import ZbusTestSupport
import NIOConcurrencyHelpers
import NIOCore
import ZbusStore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A fresh directory under the system's temporary directory, deleted by ``remove()``.
struct TemporaryDirectory {
    let path: String

    init() {
        var template = Array("/tmp/zbus-store-test-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "mkdtemp failed")
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The store directory inside it (not created: the store creates it).
    var store: String { path + "/store" }

    func remove() {
        removeTree(path)
    }

    /// Runs `body` with a fresh directory and deletes it afterwards, whatever happens.
    static func with<T>(_ body: (TemporaryDirectory) throws -> T) rethrows -> T {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        return try body(directory)
    }
}

// MARK: - Record helpers

func record(_ text: String) -> ByteBuffer {
    ByteBuffer(string: text)
}

func text(_ buffer: ByteBuffer) -> String {
    String(buffer: buffer)
}

extension DurableQueue {
    /// Every record ``next()`` hands out now, as strings.
    func drainTexts() -> [String] {
        var out: [String] = []
        while let (_, buffer) = next() { out.append(text(buffer)) }
        return out
    }

    /// Every record ``next()`` hands out now, with sequences.
    func drain() -> [(sequence: UInt64, record: ByteBuffer)] {
        var out: [(sequence: UInt64, record: ByteBuffer)] = []
        while let item = next() { out.append(item) }
        return out
    }
}

// MARK: - File helpers (the tests poke at the files the way a crash or a bad disk would)

func segmentFileName(_ first: UInt64) -> String {
    let digits = String(first)
    return String(repeating: "0", count: 20 - digits.count) + digits + ".seg"
}

func listDirectory(_ path: String) -> [String] {
    guard let directory = opendir(path) else { return [] }
    defer { closedir(directory) }
    var names: [String] = []
    while let entry = readdir(directory) {
        let name = withUnsafePointer(to: entry.pointee.d_name) {
            $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
        }
        if name != "." && name != ".." { names.append(name) }
    }
    return names.sorted()
}

func segmentFiles(_ queueDirectory: String) -> [String] {
    listDirectory(queueDirectory).filter { $0.hasSuffix(".seg") }
}

func fileExists(_ path: String) -> Bool {
    var info = stat()
    return stat(path, &info) == 0
}

func isDirectory(_ path: String) -> Bool {
    var info = stat()
    return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
}

func readFile(_ path: String) -> [UInt8] {
    let descriptor = open(path, O_RDONLY)
    precondition(descriptor >= 0, "cannot open \(path)")
    defer { close(descriptor) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let got = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress!, $0.count) }
        precondition(got >= 0, "cannot read \(path)")
        if got == 0 { break }
        bytes.append(contentsOf: chunk[0..<got])
    }
    return bytes
}

func writeFile(_ path: String, _ bytes: [UInt8]) {
    let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    precondition(descriptor >= 0, "cannot create \(path)")
    defer { close(descriptor) }
    let written = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress!, $0.count) }
    precondition(written == bytes.count, "short write to \(path)")
}

func removeTree(_ path: String) {
    if isDirectory(path) {
        for name in listDirectory(path) { removeTree(path + "/" + name) }
        rmdir(path)
    } else {
        unlink(path)
    }
}

/// The offsets at which each record of a segment file ends (its framing parsed the simple way).
func recordEnds(ofSegment bytes: [UInt8]) -> [Int] {
    var ends: [Int] = []
    var offset = 12
    while offset + 8 <= bytes.count {
        let length = bytes[offset..<(offset + 4)].reduce(0) { $0 << 8 | Int($1) }
        guard offset + 8 + length <= bytes.count else { break }
        offset += 8 + length
        ends.append(offset)
    }
    return ends
}

/// The resident set size of this process in bytes (Linux), or `nil`.
func residentBytes() -> Int? {
    let descriptor = open("/proc/self/statm", O_RDONLY)
    guard descriptor >= 0 else { return nil }
    defer { close(descriptor) }
    var buffer = [UInt8](repeating: 0, count: 256)
    let got = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress!, $0.count) }
    guard got > 0 else { return nil }
    let fields = String(decoding: buffer[0..<got], as: UTF8.self).split(separator: " ")
    guard fields.count > 1, let pages = Int(fields[1]) else { return nil }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

/// Monotonic time in seconds, for reports (never asserted on).
func monotonicSeconds() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}

func mkdirPath(_ path: String) -> Int32 {
    mkdir(path, 0o755)
}

