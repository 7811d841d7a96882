import NIOCore
import Testing

@testable import ZbusProtocol

/// A message is a value: its parts live in one shared box, copied on the first write to a shared one.
@Suite("Message: a value whose parts are shared until written")
struct MessageValueTests {
    private static func sample() -> Message {
        var message = Message(method: "POST", uri: "/x", body: ByteBuffer(string: "body"))
        message.cmd = "produce"
        message.mq = "Q"
        message.id = "p-1"
        return message
    }

    @Test("a copy shares the parts until either is written; each write changes only the message written")
    func copiesAreIndependent() {
        let original = Self.sample()
        var copy = original
        #expect(copy.parts === original.parts, "a copy shares the box")

        copy.id = "p-2"
        #expect(copy.parts !== original.parts, "the first write gives the copy its own box")
        #expect(original.id == "p-1" && copy.id == "p-2")

        var second = original
        second.startLine = .status(code: 202, reason: nil)
        second.body = nil
        second.closeRequested = true
        second.headers.removeValue(lowercased: HeaderName.mq)
        #expect(original.startLine == .request(method: "POST", uri: "/x"))
        #expect(original.bodyString == "body" && !original.closeRequested && original.mq == "Q")
        #expect(second.status == 202 && second.body == nil && second.closeRequested && second.mq == nil)
    }

    @Test("a message written while it is the only one holding its parts keeps its box")
    func uniqueWritesInPlace() {
        var message = Self.sample()
        let box = ObjectIdentifier(message.parts)  // not a reference: holding one would share the box
        message.id = "p-3"
        message.headers.set(lowercased: "x-extra", "1")
        message.body = ByteBuffer(string: "other")
        #expect(ObjectIdentifier(message.parts) == box)
        #expect(message.id == "p-3" && message.headers["x-extra"] == "1" && message.bodyString == "other")
    }

    @Test("acceptedAt travels with copies and is not shared: stamping a copy leaves the original and its box alone")
    func acceptedAtBesideTheBox() {
        let original = Self.sample()
        var stamped = original
        stamped.acceptedAt = .uptimeNanoseconds(42)
        #expect(stamped.parts === original.parts, "a stamp does not copy the parts")
        #expect(original.acceptedAt == nil && stamped.acceptedAt == .uptimeNanoseconds(42))
        let copied = stamped
        #expect(copied.acceptedAt == .uptimeNanoseconds(42))
    }

    @Test("messages written concurrently from copies of one: each thread sees only its own writes")
    func concurrentCopies() async {
        let shared = Self.sample()
        let ids = await withTaskGroup(of: Bool.self) { group in
            for task in 0..<8 {
                group.addTask {
                    var mine = shared
                    for round in 0..<500 {
                        mine.id = "t\(task)-\(round)"
                        mine.headers.set(lowercased: "x-round", String(round))
                        guard mine.id == "t\(task)-\(round)" else { return false }
                    }
                    return shared.id == "p-1"
                }
            }
            var all: [Bool] = []
            for await result in group { all.append(result) }
            return all
        }
        #expect(ids == Array(repeating: true, count: 8))
        #expect(shared.id == "p-1" && shared.headers["x-round"] == nil)
    }
}
