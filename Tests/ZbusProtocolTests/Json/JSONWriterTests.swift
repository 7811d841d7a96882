import NIOCore
import Testing
import ZbusProtocol

/// The one JSON writer (``JSONWriter``, also behind `JSONValue.jsonText`): JSON always escaped correctly.
@Suite("JSON writer")
struct JSONWriterTests {
    @Test("quotes, backslashes and every control character are escaped; the slash and DEL are not")
    func escapesASCII() {
        #expect(JSONWriter.text(of: .string(#"q"b\s/"#)) == #""q\"b\\s/""#)
        #expect(JSONWriter.text(of: "\n\r\t\u{08}\u{0C}") == #""\n\r\t\b\f""#)
        for byte in UInt8(0)..<0x20 where ![0x08, 0x09, 0x0A, 0x0C, 0x0D].contains(byte) {
            let hex = String(byte, radix: 16)
            let expected = "\"\\u" + String(repeating: "0", count: 4 - hex.count) + hex + "\""
            #expect(JSONWriter.text(of: .string(String(UnicodeScalar(byte)))) == expected)
        }
        #expect(JSONWriter.text(of: "\u{7F}") == "\"\u{7F}\"")
    }

    @Test("non-ASCII text is written as UTF-8, unescaped, and reads back the same")
    func nonASCII() throws {
        let text = "é漢😀\u{2028}\u{FEFF}"
        var buffer = ByteBuffer()
        JSONWriter.write(.string(text), into: &buffer)
        #expect(Array(buffer.readableBytesView) == Array(("\"" + text + "\"").utf8))
        #expect(try JSONParser.parse(buffer) == .string(text))
    }

    @Test("a lone surrogate cannot reach the writer: the parser reads one as U+FFFD, which is written as valid UTF-8")
    func loneSurrogate() throws {
        let parsed = try JSONParser.parse(#"["\ud800","\udc00x","\ud83d\ude00"]"#)
        #expect(parsed == ["\u{FFFD}", "\u{FFFD}x", "😀"])
        let written = JSONWriter.text(of: parsed)
        #expect(written == "[\"\u{FFFD}\",\"\u{FFFD}x\",\"😀\"]")
        #expect(try JSONParser.parse(written) == parsed)
    }

    @Test("jsonText is the writer's text; keys sorted and escaped, numbers as JSON can carry them")
    func valuesAndKeys() {
        let value: JSONValue = ["b\"": [1, -2, 1.5, true, nil], "a": ["x": "y"], "n": .double(.nan), "i": .double(.infinity)]
        #expect(value.jsonText == #"{"a":{"x":"y"},"b\"":[1,-2,1.5,true,null],"i":null,"n":null}"#)
        #expect(value.jsonText == JSONWriter.text(of: value))
        #expect(JSONWriter.text(of: .int(.min)) == "-9223372036854775808")
        #expect(JSONWriter.text(of: .double(3)) == "3.0")
        #expect(JSONWriter.text(of: .double(1e-7)) == "1e-07")
        #expect(JSONWriter.text(of: [:]) == "{}")
        #expect(JSONWriter.text(of: []) == "[]")
    }

    @Test("whatever is written parses back to the same value", arguments: [
        JSONValue.string("tab\tquote\"back\\slash\u{01}\u{1F}end"),
        ["nested": [["deep": ["é", 0, -1, 123_456_789_012]]], "": nil, "k\n": false],
        .array((0..<40).map { .string(String(UnicodeScalar(UInt8($0)))) }),
    ])
    func roundTrip(value: JSONValue) throws {
        #expect(try JSONParser.parse(JSONWriter.text(of: value)) == value)
    }
}
