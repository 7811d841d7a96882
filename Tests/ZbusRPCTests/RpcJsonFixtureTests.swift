import Foundation
import NIOCore
import Testing
import Zbus

/// What zbus 6 peers really put on the wire (Java with fastjson's `WriteClassName`, Python's `json.dumps`), read and
/// written by the JSON codec and answered by the processor.
@Suite("RPC JSON fixtures")
struct RpcJsonFixtureTests {
    let codec = JsonRpcCodec()
    let responder = RpcResponder(processor: CalcService.processor)

    /// A request message with a JSON body.
    func request(_ json: String, headers: [(String, String)] = []) -> Message {
        message(json, [("content-type", "application/json")] + headers)
    }

    /// Answers `json` and returns (status, body object).
    func answer(_ json: String, headers: [(String, String)] = []) async throws -> (Int, [String: JSONValue]) {
        let reply = await responder.respond(to: request(json, headers: headers))
        guard case .object(let object) = try JSONParser.parse(reply.bodyString) else { throw RpcTestError("not an object: \(reply.bodyString)") }
        return (reply.status ?? 0, object)
    }

    // MARK: - Requests as peers send them

    @Test("integers are written as their decimal text, from the smallest to the largest 64-bit value")
    func integerText() {
        let values: [Int64] = [0, 7, 9, 10, 11, 99, 100, -1, -9, -10, -11, 12_345, -98_765, 1 << 40, .max, .min, .max - 1, .min + 1]
        for value in values {
            #expect(JSONWriter.text(of: .int(value)) == String(value))
        }
        #expect(JSONWriter.text(of: .array([.int(-3), .int(42), .int(1_000_000)])) == "[-3,42,1000000]")
    }

    @Test("Java request: @type ignored, paramTypes kept, fastjson 3L numbers read")
    func javaRequest() throws {
        let json = #"{"@type":"org.zbus.rpc.RpcCodec$Request","encoding":"UTF-8","method":"plus","module":"org.example.Calc","paramTypes":["long","long"],"params":[3L,4]}"#
        let decoded = try codec.decodeRequest(request(json))
        #expect(decoded == RpcRequest(module: "org.example.Calc", method: "plus", params: [3, 4], paramTypes: ["long", "long"], encoding: "UTF-8"))
    }

    @Test("Python request: plain, no module, no paramTypes")
    func pythonRequest() throws {
        let decoded = try codec.decodeRequest(request(#"{"method": "echo", "params": ["hi"]}"#))
        #expect(decoded == RpcRequest(module: "", method: "echo", params: ["hi"]))
    }

    @Test("missing params become [], a null module becomes \"\", a lone argument becomes a list")
    func defaults() throws {
        #expect(try codec.decodeRequest(request(#"{"method":"echo"}"#)).params == [])
        #expect(try codec.decodeRequest(request(#"{"module":null,"method":"echo","params":null}"#)) == RpcRequest(method: "echo"))
        #expect(try codec.decodeRequest(request(#"{"method":"echo","params":"solo"}"#)).params == ["solo"])
    }

    @Test("Java bean arguments with nested @type decode into Swift structs")
    func javaBeans() async throws {
        struct User: Codable, Equatable { var name: String; var age: Int }
        var processor = RpcProcessor()
        processor.module("users") { $0.method("older") { (user: User) in User(name: user.name, age: user.age + 1) } }
        let json = #"{"@type":"org.zbus.rpc.RpcCodec$Request","method":"older","module":"users","params":[{"@type":"org.example.User","age":41L,"name":"Ann"}]}"#
        let reply = await RpcResponder(processor: processor).respond(to: request(json))
        #expect(reply.status == 200)
        #expect(reply.bodyString == #"{"result":{"age":42,"name":"Ann"},"error":null,"stackTrace":null,"encoding":"UTF-8"}"#)
    }

    @Test("a body in ISO-8859-1 (encoding header) is read in that charset")
    func latin1Body() throws {
        var message = Message(method: "POST", body: ByteBuffer(bytes: Array(#"{"method":"echo","params":["caf"#.utf8) + [0xE9] + Array(#""]}"#.utf8)))
        message.encoding = "ISO-8859-1"
        #expect(try codec.decodeRequest(message).params == ["café"])
    }

    // MARK: - Writing, exactly

    @Test("requests and responses are written as zbus 6 writes them, strings escaped")
    func exactWriting() throws {
        let call = try codec.encodeRequest(RpcRequest(module: "calc", method: "echo", params: ["q\"b\\s/\n\u{1}é漢😀"]))
        #expect(call.contentType == "application/json")
        #expect(call.bodyString == #"{"module":"calc","method":"echo","params":["q\"b\\s/\n\u0001é漢😀"],"paramTypes":null,"encoding":"UTF-8"}"#)
        let ok = codec.encodeResponse(RpcResponse(result: ["a": [1, 2.5, true, nil]]))
        #expect(ok.status == 200)
        #expect(ok.bodyString == #"{"result":{"a":[1,2.5,true,null]},"error":null,"stackTrace":null,"encoding":"UTF-8"}"#)
        let failed = codec.encodeResponse(.failure("bad \"x\"", stackTrace: "E: bad \"x\"\n\tat here"))
        #expect(failed.status == 500)
        #expect(failed.bodyString == #"{"result":null,"error":{"message":"bad \"x\""},"stackTrace":"E: bad \"x\"\n\tat here","encoding":"UTF-8"}"#)
    }

    @Test("non-ASCII, quotes, backslashes and control characters survive a round trip", arguments: [
        "plain", "quote \" inside", "back\\slash", "both \\\" mixed", "tab\tnew\nline\r", "\u{0}\u{1F}", "é ü ß", "漢字かな", "😀 👩‍👩‍👧", "\u{2028}\u{2029}", "",
    ])
    func roundTrip(text: String) async throws {
        let call = try codec.encodeRequest(RpcRequest(module: "calc", method: "echo", params: [.string(text)]))
        let reply = await responder.respond(to: call)
        let response = try codec.decodeResponse(reply)
        #expect(response.result == .string(text))
        #expect(!response.isFailure)
    }

    // MARK: - Responses as peers send them

    @Test("Java success response with @type")
    func javaResponse() throws {
        let reply = message(#"{"@type":"org.zbus.rpc.RpcCodec$Response","encoding":"UTF-8","error":null,"result":{"@type":"org.example.User","age":18L,"name":"hong"},"stackTrace":null}"#)
        let response = try codec.decodeResponse(reply)
        #expect(!response.isFailure)
        #expect(response.result["name"] == "hong")
        #expect(response.result["age"] == 18)
    }

    @Test("Java failure response: Throwable JSON with a stackTrace array inside, stackTrace text outside")
    func javaFailure() throws {
        let json = #"{"@type":"org.zbus.rpc.RpcCodec$Response","encoding":"UTF-8","error":{"@type":"java.lang.IllegalArgumentException","localizedMessage":"calc:nosuch not found, module may not set, or wrong","message":"calc:nosuch not found, module may not set, or wrong","stackTrace":[{"className":"org.zbus.rpc.RpcProcessor","fileName":"RpcProcessor.java","lineNumber":96,"methodName":"process","nativeMethod":false}],"suppressed":[]},"result":null,"stackTrace":"java.lang.IllegalArgumentException: calc:nosuch not found, module may not set, or wrong\n\tat org.zbus.rpc.RpcProcessor.process(RpcProcessor.java:96)\n"}"#
        var reply = message(json)
        reply.status = 500
        let response = try codec.decodeResponse(reply)
        #expect(response.isFailure)
        #expect(response.errorMessage == "calc:nosuch not found, module may not set, or wrong")
        #expect(response.stackTrace?.hasPrefix("java.lang.IllegalArgumentException: calc:nosuch") == true)
    }

    @Test("Python failure response: error string and stack_trace (snake case) are a failure")
    func pythonFailure() throws {
        let response = try codec.decodeResponse(message(#"{"result": null, "error": "integer division or modulo by zero", "stack_trace": "Traceback (most recent call last):\n  ZeroDivisionError"}"#))
        #expect(response.isFailure)
        #expect(response.errorMessage == "integer division or modulo by zero")
        #expect(response.stackTrace?.hasPrefix("Traceback") == true)
        let ok = try codec.decodeResponse(message(#"{"result": 3}"#))
        #expect(!ok.isFailure)
        #expect(ok.result == 3)
        let nan = try codec.decodeResponse(message(#"{"result": NaN}"#))
        #expect(nan.result.doubleValue?.isNaN == true)
    }

    @Test("a non-200 answer that is not JSON (a plain error text) is a failure carrying the text")
    func plainErrorText() throws {
        var reply = message("MQ(Calc) Service Down")
        reply.status = 404
        let response = try codec.decodeResponse(reply)
        #expect(response.isFailure)
        #expect(response.errorMessage == "MQ(Calc) Service Down")
        #expect(throws: RpcCodecError.self) { try codec.decodeResponse(message("not json")) }
    }

    // MARK: - Error paths of the service, each with its message

    @Test("method not found: zbus 6's message")
    func methodNotFound() async throws {
        let (status, body) = try await answer(#"{"module":"calc","method":"nosuch","params":[]}"#)
        #expect(status == 500)
        #expect(body["error"]?["message"] == "calc:nosuch not found, module may not set, or wrong")
        #expect(body["stackTrace"] == "ZbusRPC.RpcServiceError: calc:nosuch not found, module may not set, or wrong")
        #expect(body["result"] == .null)
        let (_, unknownModule) = try await answer(#"{"module":"nope","method":"plus","params":[1,2]}"#)
        #expect(unknownModule["error"]?["message"] == "nope:plus not found, module may not set, or wrong")
    }

    @Test("wrong argument count: zbus 6's message, listing the overloads")
    func argumentCount() async throws {
        let (status, body) = try await answer(#"{"module":"calc","method":"minus","params":[1]}"#)
        #expect(status == 500)
        #expect(body["error"]?["message"] == "Method:minus(Int, Int), called with minus(1)")
        let (_, overloads) = try await answer(#"{"module":"calc","method":"plus","params":["a"]}"#)
        #expect(overloads["error"]?["message"] == #"Method:plus(Int, Int) or plus(Int, Int, Int), called with plus("a")"#)
    }

    @Test("an argument of the wrong type names the argument, the type and the value")
    func argumentType() async throws {
        let (status, body) = try await answer(#"{"module":"calc","method":"plus","params":[1,"x"]}"#)
        #expect(status == 500)
        #expect(body["error"]?["message"] == #"Method:plus: argument 2 must be Int, got "x""#)
        let (_, fraction) = try await answer(#"{"method":"plus","params":[1,2.5]}"#)
        #expect(fraction["error"]?["message"] == "Method:plus: argument 2 must be Int, got 2.5")
    }

    @Test("lenient conversions, as fastjson's: numbers in strings, whole doubles, numbers as String")
    func lenientArguments() async throws {
        #expect(try await answer(#"{"method":"plus","params":["40","2.0"]}"#).1["result"] == 42)
        #expect(try await answer(#"{"method":"echo","params":[12]}"#).1["result"] == "12")
    }

    @Test("a thrown Swift error becomes 500 with its description and a Java-like trace line")
    func thrownError() async throws {
        let (status, body) = try await answer(#"{"module":"calc","method":"divide","params":[1,0]}"#)
        #expect(status == 500)
        #expect(body["error"]?["message"] == "cannot divide 1 by zero")
        #expect(body["stackTrace"] == "ZbusRPCModule.CalcService.Failure: cannot divide 1 by zero")
        let (_, failed) = try await answer(#"{"method":"fail","params":["as asked"]}"#)
        #expect(failed["error"]?["message"] == "as asked")
    }

    @Test("unreadable requests: 500 with what was wrong", arguments: [
        ("not json", "the body is not JSON"),
        ("[1,2]", "must be a JSON object"),
        (#"{"method":42}"#, "field 'method' must be a string, found 42"),
        (#"{"method":"echo","params":["x"]"#, "invalid JSON at byte"),
        ("", "found an empty body"),
    ])
    func unreadable(body: String, expected: String) async throws {
        let reply = await responder.respond(to: request(body))
        #expect(reply.status == 500)
        let response = try codec.decodeResponse(reply)
        #expect(response.errorMessage?.contains(expected) == true, "\(response.errorMessage ?? "-")")
        #expect(response.errorMessage?.hasPrefix("bad request: json codec") == true)
    }

    @Test("an unknown charset is refused with the supported ones")
    func unknownCharset() async throws {
        let (status, body) = try await answer(#"{"method":"echo","params":["x"]}"#, headers: [("encoding", "EBCDIC")])
        #expect(status == 500)
        #expect(body["error"]?["message"]?.stringValue?.contains("charset 'EBCDIC'") == true)
    }

    // MARK: - Catalogue, overloads, lookup

    @Test("an empty method returns the catalogue; overloads are listed separately")
    func catalogue() async throws {
        let (status, body) = try await answer(#"{"module":"","method":"","params":[]}"#)
        #expect(status == 200)
        guard case .array(let methods)? = body["result"]?["calc"] else { throw RpcTestError("no calc in \(body)") }
        let plus = methods.filter { $0["name"] == "plus" }
        #expect(plus.map { $0["paramTypes"] } == [["Int", "Int"], ["Int", "Int", "Int"]])
        #expect(plus.first?["returnType"] == "Int")
        #expect(plus.first?["modules"] == ["calc", "Calc"])
        #expect(methods.contains { $0["name"] == "fail" && $0["returnType"] == "Void" })
        let (_, alias) = try await answer(#"{"module":"Calc","method":""}"#)
        #expect(alias["result"]?["calc"] != nil)
        let (unknownStatus, unknown) = try await answer(#"{"module":"nope","method":""}"#)
        #expect(unknownStatus == 500)
        #expect(unknown["error"]?["message"] == "module 'nope' not found; modules: calc")
    }

    @Test("overloads by parameter count; module-less and alias lookup")
    func overloads() async throws {
        #expect(try await answer(#"{"module":"calc","method":"plus","params":[1,2]}"#).1["result"] == 3)
        #expect(try await answer(#"{"module":"calc","method":"plus","params":[1,2,3]}"#).1["result"] == 6)
        #expect(try await answer(#"{"method":"minus","params":[5,2]}"#).1["result"] == 3)
        #expect(try await answer(#"{"module":"Calc","method":"minus","params":[5,2]}"#).1["result"] == 3)
    }

    // MARK: - URL calls

    @Test("URL parameters become properly escaped JSON (the 6.3.0 bug fixed)")
    func urlBodies() throws {
        #expect(RpcUrl.requestBody(module: nil, method: "plus", params: "1,2")
            == #"{"module":"","method":"plus","params":[1,2],"paramTypes":null,"encoding":"UTF-8"}"#)
        #expect(UrlRequest.arguments(fromParams: #""a\"b",true"#) == [#"a"b"#, true])
        #expect(UrlRequest.arguments(fromParams: #"say "hi" \ now"#) == [#"say "hi" \ now"#])
        #expect(UrlRequest.arguments(fromParams: "hello,world") == ["hello", "world"])
        #expect(UrlRequest.arguments(fromParams: "[1,2]") == [[1, 2]])
        #expect(UrlRequest.arguments(fromParams: "  ") == [])
        let quoted = RpcUrl.requestBody(module: "calc", method: "echo", params: #"a"b\c"#)
        #expect(quoted == #"{"module":"calc","method":"echo","params":["a\"b\\c"],"paramTypes":null,"encoding":"UTF-8"}"#)
        #expect(try JSONParser.parse(quoted)["params"] == [#"a"b\c"#])
    }

    // MARK: - Parser

    @Test("the parser rejects what is not JSON, with the offset", arguments: [
        "{", "[1,]", #"{"a" 1}"#, "tru", "01x", #""unterminated"#, #""bad \q escape""#, "1 2", String(repeating: "[", count: 600),
    ])
    func parserRejects(text: String) {
        #expect(throws: JSONParseError.self) { try JSONParser.parse(text) }
    }

    @Test("the parser reads numbers, escapes, surrogates and fastjson extras")
    func parserReads() throws {
        #expect(try JSONParser.parse("-9223372036854775808") == .int(.min))
        #expect(try JSONParser.parse("9223372036854775808") == .double(9223372036854775808))
        #expect(try JSONParser.parse("1.5e3") == 1500.0)
        #expect(try JSONParser.parse(#""\ud83d\ude00 \u00e9 \/""#) == "😀 é /")
        #expect(try JSONParser.parse("[2S, 1B, 1.5F, 2.5D, 7L]") == [2, 1, 1.5, 2.5, 7])
        #expect(try JSONParser.parse("Set[1,2]") == [1, 2])
        #expect(try JSONParser.parse("new Date(1458000000000)") == 1_458_000_000_000)
        #expect(try JSONParser.parse(" {\"a\" : [ ] , \"b\":{}} ") == ["a": [], "b": [:]])
    }
}

extension JSONValue {
    /// The number as a Double (tests).
    var doubleValue: Double? {
        switch self {
        case .double(let value): return value
        case .int(let value): return Double(value)
        default: return nil
        }
    }
}
