import Testing

@testable import ZbusMQ

/// The master links of the MQ table: cycles and chain depth (see ``MasterLinks``).
@Suite("Master links")
struct MasterLinksTests {
    @Test("cycles are refused, dangling links included; the chain depth counts links above and below")
    func checks() {
        var links = MasterLinks()
        links.link("B", to: "A")  // A since removed: the link dangles
        #expect(links.problem(linking: "A", to: "B", maxDepth: 16) == .cycle(["A", "B", "A"]))
        #expect(links.problem(linking: "C", to: "B", maxDepth: 16) == nil)
        links.link("C", to: "B")
        // A new A under a root R would head B and C: R <- A <- B <- C is three links.
        #expect(links.problem(linking: "A", to: "R", maxDepth: 3) == nil)
        #expect(links.problem(linking: "A", to: "R", maxDepth: 2) == .tooDeep(links: 3, limit: 2))
        #expect(Set(links.descendants(of: "A")) == ["B", "C"])
    }

    @Test("loading breaks each stored cycle at one link, the same one every time")
    func load() {
        let (links, broken) = MasterLinks.load(["A": "B", "B": "C", "C": "A", "D": "D"], maxDepth: 16)
        #expect(links.masters == ["A": "B", "B": "C"])
        #expect(broken.map(\.slave) == ["C", "D"])
        let (deep, cut) = MasterLinks.load(Dictionary(uniqueKeysWithValues: (1...5).map { ("m\($0)", "m\($0 - 1)") }), maxDepth: 3)
        // m4 would make a fourth link; m5 then heads a chain of its own.
        #expect(deep.masters.count == 4)
        #expect(cut.map(\.slave) == ["m4"])
    }
}
