import Testing

@testable import ZbusProtocol

/// A header block built in code and indexed (`Headers.index()`, as a prepared request is): every indexed read gives
/// what a search gives, and a change that moves headers drops the index.
@Suite("Headers: the index of a block built in code")
struct HeadersIndexTests {
    private static func expectReadsAgree(_ headers: Headers, _ comment: Comment) {
        var raw = 0
        while let header = Headers.Indexed(rawValue: raw) {
            #expect(headers.value(indexed: header) == headers.value(lowercased: header.name), "\(header.name): \(comment)")
            raw += 1
        }
    }

    @Test("every indexed header is found at its slot, absent ones are absent, a repeated name reads its first line")
    func indexedReads() {
        var headers = Headers()
        for (name, value) in [("cmd", "consume"), ("mq", "Q"), ("x-other", "1"), ("id", "c-1"), ("token", "t"),
                              ("timeout", "10000"), ("sender", "s"), ("server", "n"), ("remote-addr", "a"),
                              ("topic", "x"), ("key", "k"), ("key_group", "g"), ("recver", "r"), ("rawid", "p"),
                              ("http-method", "PUT"), ("path", "/orders/7")] {
            headers.set(lowercased: name, value)
        }
        headers.append(lowercased: "mq", "second line")
        headers.index()
        #expect(headers.isIndexed)
        Self.expectReadsAgree(headers, "all present")
        #expect(headers.value(indexed: .mq) == "Q")
        #expect(headers.value(indexed: .httpPath) == "/orders/7" && headers.value(indexed: .httpMethod) == "PUT")

        var sparse = Headers()
        sparse.set(lowercased: "mq", "Q")
        sparse.set(lowercased: "x-other", "1")
        sparse.index()
        Self.expectReadsAgree(sparse, "most absent")
        #expect(sparse.value(indexed: .id) == nil)
    }

    @Test("every indexed header has a slot: the index is a SIMD16, and a 17th case would trap on its first read")
    func slotsSuffice() {
        var count = 0
        while Headers.Indexed(rawValue: count) != nil { count += 1 }
        #expect(count <= Headers().slots.scalarCount, "\(count) indexed headers for \(Headers().slots.scalarCount) slots")
    }

    @Test("replacing a value keeps the index; adding or removing a header drops it, and reads still agree")
    func changes() {
        var headers = Headers()
        headers.set(lowercased: "mq", "Q")
        headers.set(lowercased: "id", "1")
        headers.index()
        headers.set(lowercased: "id", "2")
        #expect(headers.isIndexed)
        #expect(headers.value(indexed: .id) == "2")
        headers.removeValue(lowercased: "mq")
        #expect(!headers.isIndexed)
        Self.expectReadsAgree(headers, "after a removal")
        headers.index()
        headers.set(lowercased: "token", "t")
        #expect(!headers.isIndexed)
        Self.expectReadsAgree(headers, "after an addition")
    }
}
