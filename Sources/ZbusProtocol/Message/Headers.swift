/// The header block of a ``Message``.
///
/// Names are case-insensitive: they are stored lower-cased (the decoder lower-cases what it reads and every setter
/// lower-cases what it is given), and setting a name that is already present replaces its value, so the last one wins.
/// The one exception is a header that cannot be joined into one line, `set-cookie` (RFC 9110 5.3): the decoder keeps
/// each of its lines, and ``append(lowercased:_:)`` adds one; ``values(_:)`` reads them all, the subscript the first.
/// The block keeps insertion order, which makes encoding deterministic. It is a small array rather than a dictionary
/// because a zbus message carries about ten headers and a linear scan over them beats hashing.
public struct Headers: Sendable, Equatable {
    /// One header line. A struct rather than a `(name, value)` tuple: arrays of tuples are copied and destroyed
    /// through the runtime's generic tuple witnesses, element by element, where a struct has its own (measured with
    /// callgrind: a few hundred instructions per message).
    @usableFromInline
    internal struct Field: Sendable {
        @usableFromInline var name: String
        @usableFromInline var value: String

        @inlinable
        init(name: String, value: String) {
            self.name = name
            self.value = value
        }
    }

    @usableFromInline
    internal var storage: [Field]

    /// The protocol's headers whose places the parser notes as it decodes, so that reading one of them is a look at
    /// a slot rather than a search of the block (a request reads five or six of them, most absent).
    @usableFromInline
    internal enum Indexed: Int {
        case cmd, mq, id, ack, rawId, token, timeout, sender, server, remoteAddr, key, keyGroup, topic, recver
        /// A bus adapter's two (read twice a call); with them the 16 slots of `slots` are all taken (a test holds
        /// the count to the slots).
        case httpMethod, httpPath

        @usableFromInline
        var name: String {
            switch self {
            case .cmd: HeaderName.cmd
            case .mq: HeaderName.mq
            case .id: HeaderName.id
            case .ack: HeaderName.ack
            case .rawId: HeaderName.rawId
            case .token: HeaderName.token
            case .timeout: HeaderName.timeout
            case .sender: HeaderName.sender
            case .server: HeaderName.server
            case .remoteAddr: HeaderName.remoteAddr
            case .key: HeaderName.key
            case .keyGroup: HeaderName.keyGroup
            case .topic: HeaderName.topic
            case .recver: HeaderName.recver
            case .httpMethod: HeaderName.httpMethod
            case .httpPath: HeaderName.httpPath
            }
        }
    }

    /// For each ``Indexed`` header, its position in `storage` plus one, or 0 when absent; meaningful only while
    /// `isIndexed`. The parser sets both once a block is complete; anything that adds or removes a header clears
    /// `isIndexed` (replacing a value keeps every position), and reads fall back to the search.
    @usableFromInline
    internal var slots = SIMD16<UInt8>()
    @usableFromInline
    internal var isIndexed = false

    /// Creates an empty header block.
    public init() {
        self.storage = []
    }

    /// Creates a header block from name/value pairs; a later pair replaces an earlier one with the same name.
    public init(_ pairs: [(String, String)]) {
        self.storage = []
        self.storage.reserveCapacity(pairs.count)
        for (name, value) in pairs { self[name] = value }
    }

    /// Number of headers.
    public var count: Int { storage.count }

    /// Whether there are no headers.
    public var isEmpty: Bool { storage.isEmpty }

    /// Reserves room for `capacity` headers.
    public mutating func reserveCapacity(_ capacity: Int) {
        storage.reserveCapacity(capacity)
    }

    /// The value of the header `name` (any case), or `nil`; setting `nil` removes it.
    @inlinable
    public subscript(name: String) -> String? {
        get { value(lowercased: Headers.normalize(name)) }
        set { set(lowercased: Headers.normalize(name), newValue) }
    }

    /// The value of a header whose name is known to be lower-case (the ``HeaderName`` constants).
    @inlinable
    public func value(lowercased key: String) -> String? {
        // Fields are compared in place: a `for` over the array copies each field out, retaining and releasing both
        // of its strings, and a request reads five or six headers this way.
        storage.withUnsafeBufferPointer { fields in
            for index in fields.indices where Headers.same(fields[index].name, key) { return fields[index].value }
            return nil
        }
    }

    /// Sets (or with `nil` removes) a header whose name is known to be lower-case.
    @inlinable
    public mutating func set(lowercased key: String, _ newValue: String?) {
        if let index = storage.firstIndex(where: { Headers.same($0.name, key) }) {
            if let newValue {
                storage[index].value = newValue
            } else {
                storage.remove(at: index)
                isIndexed = false
            }
        } else if let newValue {
            storage.append(Field(name: key, value: newValue))
            isIndexed = false
        }
    }

    /// The value of an ``Indexed`` header: from its slot when the parser indexed this block, else by a search.
    @inlinable
    internal func value(indexed header: Indexed) -> String? {
        guard isIndexed else { return value(lowercased: header.name) }
        let position = Int(slots[header.rawValue])
        guard position > 0 else { return nil }
        return storage.withUnsafeBufferPointer { $0[position - 1].value }
    }

    /// Name equality with a length check first: header names mostly differ in length, and comparing lengths of
    /// native strings is O(1) where a full comparison is not.
    @inlinable @inline(__always)
    static func same(_ lhs: String, _ rhs: String) -> Bool {
        lhs.utf8.count == rhs.utf8.count && lhs == rhs
    }

    /// Whether a header named `name` (any case) is present.
    public func contains(_ name: String) -> Bool { self[name] != nil }

    /// Removes the header `name` and returns its value.
    @discardableResult
    public mutating func remove(_ name: String) -> String? {
        removeValue(lowercased: Headers.normalize(name))
    }

    /// Removes the header whose name is known to be lower-case (the ``HeaderName`` constants) and returns its value.
    @inlinable
    @discardableResult
    public mutating func removeValue(lowercased key: String) -> String? {
        guard let index = storage.firstIndex(where: { Headers.same($0.name, key) }) else { return nil }
        isIndexed = false
        return storage.remove(at: index).value
    }

    /// Adds a header line whose name is known to be lower-case, after any with the same name: for a header that is
    /// sent as several lines rather than joined (`set-cookie`). The subscript and ``value(lowercased:)`` read the
    /// first of them, setting replaces the first; ``values(_:)`` reads them all, and the encoder writes each line.
    public mutating func append(lowercased key: String, _ value: String) {
        storage.append(Field(name: key, value: value))
        isIndexed = false
    }

    /// Every value of the header `name` (any case), in order: more than one only for a header added with
    /// ``append(lowercased:_:)`` or decoded from several lines (`set-cookie`).
    public func values(_ name: String) -> [String] {
        let key = Headers.normalize(name)
        return storage.compactMap { Headers.same($0.name, key) ? $0.value : nil }
    }

    /// Whether repeated lines of the header `name` (lower-case) are kept apart rather than the last one winning:
    /// `set-cookie`, whose values may hold commas (`Expires=Wed, 09 Jun 2027 ...`) and so cannot be joined with ", "
    /// as other repeated headers can (RFC 9110 5.3).
    @inlinable
    public static func keepsRepeats(_ name: String) -> Bool {
        name.utf8.count == 10 && name == "set-cookie"
    }

    /// Appends a header whose name is already lower-case and known not to be present. Used by the decoder after it
    /// has removed duplicates, so that decoding stays linear.
    @inlinable
    internal mutating func appendUnchecked(name: String, value: String) {
        storage.append(Field(name: name, value: value))
        isIndexed = false
    }

    /// The headers of a message as a consumer receives it (zbus 6 §3), built in one pass: `cmd` and `ack` left out,
    /// `rawid` set to this block's `id` (in place if present, else at the end), and `id` replaced by `requestId` when
    /// there is one (added at the end if this block has no `id`). The same block, in the same order, as removing and
    /// setting those headers one by one would give, without the copy on first write, the shifts of each removal and
    /// the regrowth of each addition (measured: about 2,000 instructions per in-process delivery).
    ///
    /// When this block is indexed (parsed), so is the result: its slots are this block's, moved with the headers they
    /// point at, so the consumer's reads of `id`, `rawid`, `sender`, `mq`... stay lookups rather than searches.
    package func forDelivery(requestId: String?) -> Headers {
        let producerId = value(indexed: .id)
        var result = Headers()
        result.storage.reserveCapacity(storage.count + 1)
        let indexed = isIndexed && storage.count < 255
        var rawIdWritten = false
        // For each header, its place in the result plus one, or 0 when left out: the slots are moved through it.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: indexed ? storage.count : 0) { moved in
            storage.withUnsafeBufferPointer { fields in
                for index in fields.indices {
                    let field = fields[index]
                    switch field.name.utf8.count {
                    case 3 where field.name == HeaderName.cmd || field.name == HeaderName.ack:
                        if indexed { moved[index] = 0 }
                        continue
                    case 2 where field.name == HeaderName.id:
                        result.storage.append(Field(name: field.name, value: requestId ?? field.value))
                    case 5 where field.name == HeaderName.rawId:
                        if let producerId {
                            result.storage.append(Field(name: field.name, value: producerId))
                            rawIdWritten = true
                        } else {
                            result.storage.append(field)
                        }
                    default:
                        result.storage.append(field)
                    }
                    if indexed { moved[index] = UInt8(truncatingIfNeeded: result.storage.count) }
                }
            }
            guard indexed else { return }
            var newSlots = SIMD16<UInt8>()
            for slot in 0..<newSlots.scalarCount where slots[slot] > 0 {
                newSlots[slot] = moved[Int(slots[slot]) - 1]
            }
            if let producerId, !rawIdWritten {
                result.storage.append(Field(name: HeaderName.rawId, value: producerId))
                newSlots[Indexed.rawId.rawValue] = UInt8(truncatingIfNeeded: result.storage.count)
            }
            if producerId == nil, let requestId {
                result.storage.append(Field(name: HeaderName.id, value: requestId))
                newSlots[Indexed.id.rawValue] = UInt8(truncatingIfNeeded: result.storage.count)
            }
            if result.storage.count < 255 {
                result.slots = newSlots
                result.isIndexed = true
            }
        }
        if !indexed {
            if let producerId, !rawIdWritten { result.storage.append(Field(name: HeaderName.rawId, value: producerId)) }
            if producerId == nil, let requestId { result.storage.append(Field(name: HeaderName.id, value: requestId)) }
        }
        return result
    }

    /// The headers of a delivered message as zbus 6 consumers present it (the reverse of ``forDelivery(requestId:)``):
    /// `id` set to the `rawid` value (in place, or at the end if there is no `id`) and `rawid` left out; without a
    /// `rawid`, `id` is left out too. Built in one pass: the delivered block is usually still shared with the message
    /// in transit, so editing it would copy it first and then shift it.
    package func forConsumer() -> Headers {
        let producerId = value(indexed: .rawId)
        var result = Headers()
        result.storage.reserveCapacity(storage.count)
        var idWritten = false
        storage.withUnsafeBufferPointer { fields in
            for field in fields {
                switch field.name.utf8.count {
                case 5 where field.name == HeaderName.rawId:
                    continue
                case 2 where field.name == HeaderName.id:
                    guard let producerId else { continue }
                    result.storage.append(Field(name: field.name, value: producerId))
                    idWritten = true
                default:
                    result.storage.append(field)
                }
            }
        }
        if let producerId, !idWritten { result.storage.append(Field(name: HeaderName.id, value: producerId)) }
        return result
    }

    /// Notes where each ``Indexed`` header is, as the parser does for what it decodes, so that reading one is a look
    /// at a slot rather than a search: for a block built in code and read many times (a request prepared once and
    /// dispatched for every call). Anything that later adds or removes a header clears the index again.
    package mutating func index() {
        guard storage.count < 255 else { return }
        var newSlots = SIMD16<UInt8>()
        storage.withUnsafeBufferPointer { fields in
            for position in fields.indices {
                guard let header = Self.indexed(fields[position].name), newSlots[header.rawValue] == 0 else { continue }
                newSlots[header.rawValue] = UInt8(position + 1)
            }
        }
        slots = newSlots
        isIndexed = true
    }

    /// The ``Indexed`` header named `name` (lower-case), or `nil`.
    private static func indexed(_ name: String) -> Indexed? {
        switch name.utf8.count {
        case 2: name == HeaderName.mq ? .mq : name == HeaderName.id ? .id : nil
        case 3: name == HeaderName.cmd ? .cmd : name == HeaderName.ack ? .ack : name == HeaderName.key ? .key : nil
        case 4: name == HeaderName.httpPath ? .httpPath : nil
        case 5: name == HeaderName.rawId ? .rawId : name == HeaderName.token ? .token : name == HeaderName.topic ? .topic : nil
        case 6: name == HeaderName.sender ? .sender : name == HeaderName.server ? .server : name == HeaderName.recver ? .recver : nil
        case 7: name == HeaderName.timeout ? .timeout : nil
        case 9: name == HeaderName.keyGroup ? .keyGroup : nil
        case 11: name == HeaderName.remoteAddr ? .remoteAddr : name == HeaderName.httpMethod ? .httpMethod : nil
        default: nil
        }
    }

    /// Calls `body` with each header's name (lower-case) and value, in order, reading them in place: iterating
    /// copies each header out, retaining and releasing both of its strings (for code that runs on every call).
    @inlinable
    package func forEachField(_ body: (_ name: String, _ value: String) throws -> Void) rethrows {
        try storage.withUnsafeBufferPointer { fields in
            for index in fields.indices { try body(fields[index].name, fields[index].value) }
        }
    }

    /// All headers in order, as `(name, value)` pairs with lower-case names.
    public var pairs: [(name: String, value: String)] { storage.map { ($0.name, $0.value) } }

    public static func == (lhs: Headers, rhs: Headers) -> Bool {
        guard lhs.storage.count == rhs.storage.count else { return false }
        for entry in lhs.storage {
            // Repeated set-cookie lines compare as their lists; any other name has one value.
            if Headers.keepsRepeats(entry.name) {
                if lhs.values(entry.name) != rhs.values(entry.name) { return false }
            } else if rhs[entry.name] != entry.value {
                return false
            }
        }
        return true
    }

    /// Lower-cases an ASCII header name, without allocating when it already is lower-case.
    @inlinable
    static func normalize(_ name: String) -> String {
        var needsLowering = false
        for byte in name.utf8 where byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") {
            needsLowering = true
            break
        }
        return needsLowering ? name.lowercased() : name
    }
}

extension Headers: Sequence {
    /// Iterates the headers in order, as `(name, value)` pairs with lower-case names.
    public struct Iterator: IteratorProtocol {
        @usableFromInline
        var base: IndexingIterator<[Field]>

        @inlinable
        init(_ base: IndexingIterator<[Field]>) {
            self.base = base
        }

        /// The next header, or `nil` after the last one.
        @inlinable
        public mutating func next() -> (name: String, value: String)? {
            guard let field = base.next() else { return nil }
            return (field.name, field.value)
        }
    }

    /// Iterates the headers in order.
    public func makeIterator() -> Iterator {
        Iterator(storage.makeIterator())
    }
}

extension Headers: CustomStringConvertible {
    public var description: String {
        storage.map { "\($0.name): \($0.value)" }.joined(separator: ", ")
    }
}
