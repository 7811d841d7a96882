/// A FIFO of positions that drops from the front in O(1) (amortised) without a collections dependency.
struct PositionRing {
    private var storage: [RecordPosition] = []
    private var head = 0

    var count: Int { storage.count - head }
    var first: RecordPosition? { head < storage.count ? storage[head] : nil }

    mutating func append(_ position: RecordPosition) { storage.append(position) }

    mutating func popFirst() -> RecordPosition? {
        guard head < storage.count else { return nil }
        let position = storage[head]
        head += 1
        if head == storage.count {
            storage.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 1024 && head * 2 >= storage.count {
            storage.removeFirst(head)
            head = 0
        }
        return position
    }

    mutating func removeAll() {
        storage = []
        head = 0
    }
}
