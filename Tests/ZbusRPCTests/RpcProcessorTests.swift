import Foundation
import NIOCore
import Testing
import Zbus

/// Processor and codec behaviour without a network.
@Suite("RPC processor and codecs")
struct RpcProcessorTests {
    struct Point: Codable, Equatable, Sendable {
        var x: Double
        var y: Double
    }

    enum Oops: Error, CustomStringConvertible {
        case bad
        var description: String { "it went bad" }
    }

    static var geometry: RpcProcessor {
        var processor = RpcProcessor()
        processor.module("geo", aliases: ["org.example.Geometry"]) { geo in
            geo.method("mid") { (a: Point, b: Point) in Point(x: (a.x + b.x) / 2, y: (a.y + b.y) / 2) }
            geo.method("norm") { (p: Point?) in p.map { ($0.x * $0.x + $0.y * $0.y).squareRoot() } }
            geo.method("sum") { (values: [Int]) in values.reduce(0, +) }
            geo.method("later") { (ms: Int) async throws -> String in
                try await Task.sleep(for: .milliseconds(ms))
                return "slept \(ms)"
            }
            geo.method("nothing") { () in }
            geo.method("boom") { () throws -> Int in throw Oops.bad }
            geo.rawMethod("count") { arguments in .int(Int64(arguments.count)) }
        }
        return processor
    }

    func process(_ method: String, _ params: [JSONValue], module: String = "geo") async -> RpcResponse {
        await Self.geometry.process(RpcRequest(module: module, method: method, params: params))
    }

    @Test("Codable structs, optionals and arrays as parameters and results")
    func codableValues() async throws {
        let mid = await process("mid", [["x": 0, "y": 0], ["x": 2, "y": 4]])
        // Foundation writes whole doubles without a fraction, so they read back as integers: the same JSON number.
        #expect(mid.result == ["x": 1, "y": 2])
        #expect(await process("norm", [["x": 3, "y": 4]]).result == 5.0)
        #expect(await process("norm", [nil]).result == .null)
        #expect(await process("sum", [[1, 2, 3]]).result == 6)
        let bad = await process("mid", [["x": "left"], ["x": 1, "y": 1]])
        #expect(bad.errorMessage?.hasPrefix("Method:mid: argument 1 must be Point") == true, "\(bad.errorMessage ?? "")")
    }

    @Test("async methods, Void results, thrown errors, raw methods")
    func kinds() async throws {
        #expect(await process("later", [5]).result == "slept 5")
        let nothing = await process("nothing", [])
        #expect(nothing.result == .null && !nothing.isFailure)
        let boom = await process("boom", [])
        #expect(boom.errorMessage == "it went bad")
        #expect(boom.stackTrace == "ZbusRPCTests.RpcProcessorTests.Oops: it went bad")
        #expect(await process("count", [1, 2, 3, 4]).result == 4)
        #expect(await process("mid", [], module: "org.example.Geometry").errorMessage == "Method:mid(Point, Point), called with mid()")
    }

    @Test("synchronous methods run inline, async ones are left to a task")
    func inlineOrNot() {
        let processor = Self.geometry
        #expect(processor.method(module: "geo", name: "sum", argumentCount: 1)?.runsInline == true)
        #expect(processor.method(module: "geo", name: "later", argumentCount: 1)?.runsInline == false)
        #expect(processor.method(module: "", name: "sum", argumentCount: 1) != nil)
        #expect(processor.method(module: "geo", name: "sum", argumentCount: 2) == nil)
    }

    @Test("merging processors; a later registration of the same name and count replaces the earlier one")
    func merging() async {
        var processor = CalcService.processor
        processor.merge(Self.geometry)
        processor.module("calc") { $0.method("minus") { (a: Int, b: Int) in b - a } }
        #expect(processor.moduleNames == ["calc", "geo"])
        #expect(await processor.process(RpcRequest(module: "calc", method: "minus", params: [1, 5])).result == 4)
        #expect(await processor.process(RpcRequest(module: "geo", method: "sum", params: [[1]])).result == 1)
        #expect(await processor.process(RpcRequest(module: "calc", method: "plus", params: [1, 5])).result == 6)
    }

    @Test("value conversions both ways")
    func conversions() throws {
        #expect(try RpcValueCoding.decode(Int8.self, from: 127) == 127)
        #expect(throws: RpcValueConversionError.self) { try RpcValueCoding.decode(Int8.self, from: 128) }
        #expect(try RpcValueCoding.decode(Bool.self, from: "true"))
        #expect(try RpcValueCoding.decode([String: Int].self, from: ["a": 1]) == ["a": 1])
        #expect(try RpcValueCoding.decode(Int?.self, from: .null) == nil)
        #expect(try RpcValueCoding.encode(Point(x: 1.5, y: 2)) == ["x": 1.5, "y": 2])
        #expect(try RpcValueCoding.encode(UInt64.max) == .double(Double(UInt64.max)))
        #expect(try RpcValueCoding.encode([1, 2] as [Int]) == [1, 2])
        #expect(try RpcValueCoding.encode(Optional<String>.none) == .null)
    }

    // MARK: - Codecs

    @Test("raw codec: the body passes through; method and module travel in headers")
    func rawCodec() async throws {
        let raw = RawRpcCodec()
        let call = try raw.encodeRequest(RpcRequest(module: "calc", method: "echo", params: ["a \"raw\" body\n"]))
        #expect(call.bodyString == "a \"raw\" body\n")
        #expect(call.headers["method"] == "echo" && call.headers["module"] == "calc")
        let responder = RpcResponder(processor: CalcService.processor, codecs: RpcCodecSet(default: raw))
        let reply = await responder.respond(to: call)
        #expect(reply.status == 200 && reply.bodyString == "a \"raw\" body\n")
        #expect(try raw.decodeResponse(reply).result == "a \"raw\" body\n")
        let failed = await responder.respond(to: message("x", [("method", "divide")]))
        #expect(failed.status == 500)
        #expect(failed.bodyString == "Method:divide(Int, Int), called with divide(\"x\")")
        #expect(try raw.decodeResponse(failed).errorMessage == failed.bodyString)
        #expect(throws: RpcCodecError.self) { try raw.encodeRequest(RpcRequest(method: "plus", params: [1, 2])) }
        let sleep = await responder.respond(to: message("5", [("method", "sleep")]))
        #expect(sleep.bodyString == "5" && sleep.contentType == "application/json")
    }

    @Test("a custom codec is one conformance; a request picks a codec by content-type, else the default")
    func customCodecAndSelection() async throws {
        let codecs = RpcCodecSet(default: LineRpcCodec(), others: [JsonRpcCodec(), RawRpcCodec()])
        let responder = RpcResponder(processor: CalcService.processor, codecs: codecs)
        let line = await responder.respond(to: message("calc.plus|40|2"))
        #expect(line.status == 200 && line.bodyString == "OK 42")
        let failed = await responder.respond(to: message("calc.divide|1|0"))
        #expect(failed.status == 500 && failed.bodyString == "ERR cannot divide 1 by zero")
        let json = await responder.respond(to: message(#"{"method":"plus","params":[1,2]}"#, [("content-type", "application/json; charset=utf-8")]))
        #expect(json.bodyString.hasPrefix(#"{"result":3,"#))
        let raw = await responder.respond(to: message("hey", [("content-type", "application/octet-stream"), ("method", "echo")]))
        #expect(raw.bodyString == "hey")
        let unknownType = await responder.respond(to: message("calc.minus|5|3", [("content-type", "application/x-www-form-urlencoded")]))
        #expect(unknownType.bodyString == "OK 2")
        #expect(codecs.codec(named: "json") is JsonRpcCodec)
    }
}
