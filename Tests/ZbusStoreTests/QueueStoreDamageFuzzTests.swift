import Foundation
import NIOCore
import Testing
import ZbusStore
import ZbusTestSupport

/// Random damage to a queue's segment files, the way a bad disk, a crash or a careless operator leaves them: bytes
/// flipped, ranges zeroed, files cut short, garbage appended, files deleted, several at once. Whatever the damage,
/// reopening must not crash, must never hand out a record that differs from what was appended under its sequence,
/// must hand out every record that lies wholly before the first damaged byte of its segment (damage loses what it
/// touched, nothing before it), must never hand out a committed record again (unless the cursor file itself was
/// damaged: then committed records may come back, uncommitted ones must still all come), and must keep working.
@Suite("QueueStore: random damage to segment files", .blockingIO(.heavy, reopensLockedFiles: true))
struct QueueStoreDamageFuzzTests {
    /// `ZBUS_STORE_FUZZ_ITERATIONS` and `ZBUS_STORE_FUZZ_SEED` run it longer or from another seed.
    static let iterations = ProcessInfo.processInfo.environment["ZBUS_STORE_FUZZ_ITERATIONS"].flatMap(Int.init) ?? 150
    static let seed = ProcessInfo.processInfo.environment["ZBUS_STORE_FUZZ_SEED"].flatMap(UInt64.init) ?? 0x5EED_0F57

    @Test func reopeningDamagedSegmentsLosesOnlyWhatTheDamageTouched() throws {
        for iteration in 0..<Self.iterations {
            var generator = SplitMix64(state: Self.seed &+ UInt64(iteration))
            try TemporaryDirectory.with { directory in
                try runOnce(directory, generator: &generator, label: "seed \(Self.seed) iteration \(iteration)")
            }
        }
    }

    private enum Damage: CaseIterable {
        case flipByte, zeroRange, truncate, appendGarbage, delete
    }

    private func runOnce(_ directory: TemporaryDirectory, generator: inout SplitMix64, label: String) throws {
        let segmentBytes = [64, 150, 400, 4096].randomElement(using: &generator)!
        // Group commit also writes zeros ahead of the writer, which rolls and closes must trim.
        let fsync: FsyncPolicy = Bool.random(using: &generator) ? .always : .none
        let logs = CapturedLogs()
        var store = try QueueStore(directory: directory.store, fsync: fsync, segmentBytes: segmentBytes, logger: logs.logger())
        var queue = try store.open(name: "q", metadata: Array("m".utf8))

        // Records of assorted sizes, some larger than a segment.
        var appended: [UInt64: [UInt8]] = [:]
        for _ in 0..<Int.random(in: 1...40, using: &generator) {
            let length = Int.random(in: 0..<10, using: &generator) == 0
                ? Int.random(in: 200...700, using: &generator) : Int.random(in: 1...60, using: &generator)
            let payload = (0..<length).map { _ in UInt8.random(in: 0x21...0x7E, using: &generator) }
            let sequence = try queue.append(ByteBuffer(bytes: payload))
            appended[sequence] = payload
        }
        let last = UInt64(appended.count)

        // Consume and commit a prefix in two steps, so reopening starts from a persisted cursor and its hint, and the
        // cursor file's other slot holds the previous commit.
        let earlier = UInt64.random(in: 0...(last / 2), using: &generator)
        let committed = UInt64.random(in: earlier...(last / 2), using: &generator)
        for _ in 0..<committed { _ = queue.next() }
        if earlier > 0 { queue.commit(through: earlier) }
        if committed > earlier { queue.commit(through: committed) }
        store.close()

        // The records each surviving segment file holds, by sequence, with where each one ends.
        let queueDirectory = directory.store + "/q"
        var layout: [String: (first: UInt64, original: [UInt8], ends: [Int])] = [:]
        for name in segmentFiles(queueDirectory) {
            let bytes = readFile(queueDirectory + "/" + name)
            layout[name] = (UInt64(name.dropLast(4))!, bytes, recordEnds(ofSegment: bytes))
        }
        let names = layout.keys.sorted()
        #expect(!names.isEmpty, "\(label)")

        // One to three kinds of damage, each to a random segment file or, now and then, to the cursor file.
        var damaged = Set<String>()
        var cursorDamaged = false
        for _ in 0..<Int.random(in: 1...3, using: &generator) {
            if Int.random(in: 0..<5, using: &generator) == 0 {
                // A damaged cursor may bring committed records back (at-least-once), never skip uncommitted ones.
                let path = queueDirectory + "/cursor"
                var bytes = readFile(path)
                guard !bytes.isEmpty else { continue }
                cursorDamaged = true
                if Bool.random(using: &generator) {
                    bytes[Int.random(in: 0..<bytes.count, using: &generator)] ^= UInt8.random(in: 1...255, using: &generator)
                    writeFile(path, bytes)
                } else {
                    writeFile(path, Array(bytes.prefix(Int.random(in: 0..<bytes.count, using: &generator))))
                }
                continue
            }
            let name = names.randomElement(using: &generator)!
            let path = queueDirectory + "/" + name
            guard fileExists(path) else { continue }
            var bytes = readFile(path)
            damaged.insert(name)
            switch Damage.allCases.randomElement(using: &generator)! {
            case .flipByte:
                guard !bytes.isEmpty else { continue }
                bytes[Int.random(in: 0..<bytes.count, using: &generator)] ^= UInt8.random(in: 1...255, using: &generator)
                writeFile(path, bytes)
            case .zeroRange:
                guard !bytes.isEmpty else { continue }
                let start = Int.random(in: 0..<bytes.count, using: &generator)
                let end = min(bytes.count, start + Int.random(in: 1...32, using: &generator))
                for index in start..<end { bytes[index] = 0 }
                writeFile(path, bytes)
            case .truncate:
                writeFile(path, Array(bytes.prefix(Int.random(in: 0..<max(1, bytes.count), using: &generator))))
            case .appendGarbage:
                bytes += (0..<Int.random(in: 1...40, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
                writeFile(path, bytes)
            case .delete:
                unlink(path)
            }
        }

        // What must survive: records of a segment that end before its first changed byte, its header intact.
        var mustSurvive = Set<UInt64>()
        for name in names {
            let (first, original, ends) = layout[name]!
            let path = queueDirectory + "/" + name
            var intactUpTo = original.count
            if damaged.contains(name) {
                let now = fileExists(path) ? readFile(path) : []
                intactUpTo = zip(original, now).prefix { $0 == $1 }.count
            }
            guard intactUpTo >= 12 else { continue }
            for (index, end) in ends.enumerated() where end <= intactUpTo {
                let sequence = first + UInt64(index)
                if sequence > committed { mustSurvive.insert(sequence) }
            }
        }

        // Reopen: what comes out is genuine, in order, after the cursor, and includes everything the damage spared.
        store = try QueueStore(directory: directory.store, fsync: fsync, segmentBytes: segmentBytes, logger: logs.logger())
        queue = try store.open(name: "q", metadata: nil)
        let survivors = queue.drain()
        let sequences = survivors.map(\.sequence)
        #expect(zip(sequences, sequences.dropFirst()).allSatisfy { $0 < $1 }, "\(label): out of order \(sequences)")
        if !cursorDamaged {
            #expect(sequences.allSatisfy { $0 > committed }, "\(label): committed record handed out again \(sequences)")
        }
        for (sequence, record) in survivors {
            #expect(appended[sequence] == Array(record.readableBytesView), "\(label): record \(sequence) differs from what was appended")
        }
        let missing = mustSurvive.subtracting(sequences)
        #expect(missing.isEmpty, "\(label): undamaged records lost: \(missing.sorted()) (damaged \(damaged.sorted()))")

        // The queue keeps working: new records come after the survivors, and a second reopen agrees with the first.
        let fresh = (1...3).map { "fresh-\($0)" }
        for text in fresh { _ = try queue.append(record(text)) }
        let afterwards = queue.drain()
        #expect(afterwards.map { text($0.record) } == fresh, "\(label)")
        // Sequences are never reused below the cursor (a damaged cursor no longer knows where it was).
        let floor = sequences.last ?? (cursorDamaged ? 0 : committed)
        #expect(afterwards.allSatisfy { $0.sequence > floor }, "\(label): \(afterwards.map(\.sequence)) after \(floor)")
        store.close()

        store = try QueueStore(directory: directory.store, fsync: fsync, segmentBytes: segmentBytes, logger: logs.logger())
        queue = try store.open(name: "q", metadata: nil)
        let again = queue.drain()
        #expect(again.map(\.sequence) == sequences + afterwards.map(\.sequence), "\(label): second reopen disagrees")
        #expect(again.map { Array($0.record.readableBytesView) } == (survivors + afterwards).map { Array($0.record.readableBytesView) },
                "\(label): second reopen disagrees")
        store.close()
    }
}
