import Testing
import ZbusKernel

/// `UrlRequest.arguments`: the one reading of RPC arguments written in a URL, for URL calls to an RPC-mode MQ and for
/// the direct RPC server. Before it, the MQ (Foundation's `JSONDecoder`) and the RPC server read some URLs differently:
/// these are those cases.
@Suite("URL arguments")
struct UrlArgumentsTests {
    private func arguments(_ uri: String) -> [JSONValue] { UrlRequest(uri: uri).arguments }

    @Test("percent-encoding is decoded before the JSON is read; an invalid escape is kept as written")
    func percentEncoding() {
        #expect(arguments("/Q/echo?params=%22a%2Cb%22,%5B1%5D") == ["a,b", [1]])
        #expect(arguments("/Q/echo?params=%22q%5C%22b%22") == [#"q"b"#])
        #expect(arguments("/Q/say?params=hello,%C3%BCber") == ["hello", "über"])
        #expect(arguments("/Q/echo?params=100%25,%zz") == ["100%", "%zz"])
    }

    @Test("`+` is a space in the query (trimmed around a piece, kept inside a string), a plus in a path segment")
    func plus() {
        #expect(arguments("/Q/echo?params=%22a+b%22,+1") == ["a b", 1])
        #expect(arguments("/Q/echo?params=a+b") == ["a b"])
        #expect(arguments("/Q/echo?params=%2B1") == ["+1"], "an encoded plus stays a plus; +1 is not JSON, so a string")
        let path = UrlRequest(uri: "/Q/calc/plus/1+2")
        #expect(path.pathSegments.last == "1+2")
        #expect(UrlRequest.arguments(fromParams: path.pathSegments.last) == ["1+2"])
    }

    @Test("empty: no params, `params=`, or only spaces is no arguments; an empty piece is an empty string")
    func emptyValues() {
        #expect(arguments("/Q/ping") == [])
        #expect(arguments("/Q/ping?params=") == [])
        #expect(arguments("/Q/ping?params=+++") == [])
        #expect(arguments("/Q/ping?params=%20") == [])
        #expect(arguments("/Q/echo?params=1,,x") == [1, "", "x"])
        #expect(arguments("/Q/echo?params=,") == ["", ""])
        #expect(UrlRequest.arguments(fromParams: nil) == [])
    }

    @Test("repeated keys: the last params= wins, and params= beats a bare token wherever it stands")
    func repeatedKeys() {
        #expect(arguments("/Q/echo?params=1&params=2") == [2])
        #expect(arguments("/Q/echo?params=1&params=") == [])
        #expect(arguments("/Q/echo?7&params=1") == [1])
        #expect(arguments("/Q/echo?params=1&7") == [1])
        #expect(arguments("/Q/echo?1,2&3,4") == [3, 4])
    }

    @Test("missing `=`: a bare token is the params; a key with `=` and no params key is not")
    func missingEquals() {
        #expect(arguments("/Q/plus?1,2") == [1, 2])
        #expect(arguments("/Q/plus?method=minus&5,3") == [5, 3])
        #expect(arguments("/Q/plus?x=1") == [])
        #expect(arguments("/Q/plus?&&1&") == [1])
    }

    @Test("JSON is read by JSONParser, zbus 6 extras included; what is not JSON is a string")
    func jsonReading() {
        #expect(arguments("/Q/m?params=3L,1.5F") == [3, 1.5], "fastjson suffixes (JSONDecoder made these strings)")
        #expect(arguments("/Q/m?params=true,null,1.5") == [true, nil, 1.5])
        #expect(arguments("/Q/m?params=1") == [1], "an integer, never a Bool")
        #expect(arguments("/Q/m?params=99999999999999999999") == [.double(1e20)])
        #expect(arguments(#"/Q/m?params="a",b"#) == ["a", "b"], "one piece that is not JSON: each piece on its own")
        #expect(arguments("/Q/m?params='x'") == ["'x'"])
        #expect(arguments("/Q/m?params=[1,{\"a\":2}]") == [[1, ["a": 2]]])
    }
}
