/// Sorted, disjoint ranges of acknowledged sequences, and their file form (UInt32 BE count, then UInt64 BE bounds).
enum AcknowledgedRanges {
    /// `ranges` merged, sorted and cut to `committed + 1 ..< nextSequence`.
    static func clamped(_ ranges: [ClosedRange<UInt64>], above committed: UInt64, below nextSequence: UInt64)
        -> [ClosedRange<UInt64>]
    {
        guard nextSequence > committed + 1 else { return [] }
        let window = (committed + 1)...(nextSequence - 1)
        var merged: [ClosedRange<UInt64>] = []
        for range in ranges.sorted(by: { $0.lowerBound < $1.lowerBound }) where range.overlaps(window) {
            let cut = range.clamped(to: window)
            if let last = merged.last, cut.lowerBound <= last.upperBound &+ 1 {
                merged[merged.count - 1] = last.lowerBound...max(last.upperBound, cut.upperBound)
            } else {
                merged.append(cut)
            }
        }
        return merged
    }

    /// How many sequences of `ranges` are at or above `start`.
    static func count(_ ranges: [ClosedRange<UInt64>], from start: UInt64) -> UInt64 {
        ranges.reduce(0) { total, range in
            range.upperBound < start ? total : total + range.upperBound - max(range.lowerBound, start) + 1
        }
    }

    static func encode(_ ranges: [ClosedRange<UInt64>]) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(4 + 16 * ranges.count)
        SegmentFormat.appendBigEndian(UInt32(ranges.count), to: &bytes)
        for range in ranges {
            SegmentFormat.appendBigEndian(range.lowerBound, to: &bytes)
            SegmentFormat.appendBigEndian(range.upperBound, to: &bytes)
        }
        return bytes
    }

    /// `nil` when the bytes do not hold whole, ordered ranges.
    static func decode(_ bytes: [UInt8]) -> [ClosedRange<UInt64>]? {
        guard bytes.count >= 4 else { return nil }
        return bytes.withUnsafeBytes { buffer -> [ClosedRange<UInt64>]? in
            let count = Int(SegmentFormat.loadBigEndian(UInt32.self, from: buffer, at: 0))
            guard bytes.count == 4 + 16 * count else { return nil }
            var ranges: [ClosedRange<UInt64>] = []
            ranges.reserveCapacity(count)
            for index in 0..<count {
                let lower = SegmentFormat.loadBigEndian(UInt64.self, from: buffer, at: 4 + 16 * index)
                let upper = SegmentFormat.loadBigEndian(UInt64.self, from: buffer, at: 12 + 16 * index)
                guard lower <= upper else { return nil }
                ranges.append(lower...upper)
            }
            return ranges
        }
    }
}
