import Foundation
import Testing
import ZbusKernel
import ZbusTestSupport

@Suite("URL RPC on RPC-mode MQs", .blockingIO(.heavy))
struct MQUrlRpcTests {
    @Test("GET /<mq>/<module>/<method>?params= becomes an escaped JSON request; the routed reply is the HTTP response")
    func urlRpc() throws {
        let node = try startMQNode()
        defer { node.cleanUp() }
        let admin = try node.connect()
        admin.request([("cmd", "create_mq"), ("mq_name", "RPCQ"), ("mq_mode", "9")])
        expectReply(try admin.receive(), status: 200)
        let service = try node.connect()
        let cases: [(uri: String, expected: [String: Any])] = [
            ("/RPCQ/echo/hello", ["module": "echo", "method": "hello"]),
            ("/RPCQ/MyModule/plus/1,2", ["module": "MyModule", "method": "plus", "params": [1, 2]]),
            ("/RPCQ/?method=echo&params=%22a%22", ["module": "", "method": "echo", "params": ["a"]]),
            ("/RPCQ/?method=echo&params=%22q%5C%22b%5C%5Cs%22", ["module": "", "method": "echo", "params": ["q\"b\\s"]]),
            ("/RPCQ/?method=say&params=hello,%C3%BCber", ["module": "", "method": "say", "params": ["hello", "über"]]),
            ("/RPCQ/m%22x/n?params=true,null,1.5", ["module": "m\"x", "method": "n", "params": [true, NSNull(), 1.5]]),
        ]
        for (index, testCase) in cases.enumerated() {
            let caller = try node.connect()
            service.request([("cmd", "consume"), ("mq", "RPCQ"), ("id", "svc\(index)"), ("timeout", "5000")])
            try node.waitForParkedConsumes("RPCQ", count: 1)
            caller.send("GET \(testCase.uri) HTTP/1.1\r\nid: call\(index)\r\n\r\n")
            let request = try service.receive()
            expectReply(request, status: 200, headers: ["content-type": "application/json", "rawid": "call\(index)"])
            let json = try #require(JSONSerialization.jsonObject(with: Data(request.bodyString.utf8)) as? NSDictionary, "\(request.bodyString)")
            #expect(json == testCase.expected as NSDictionary, "\(testCase.uri) → \(request.bodyString)")
            let sender = try #require(request.sender)
            service.request([("cmd", "route"), ("recver", sender), ("id", "call\(index)"), ("reply_code", "200")], body: #"{"result":\#(index)}"#)
            expectReply(try caller.receive(), status: 200, body: #"{"result":\#(index)}"#, headers: ["id": "call\(index)"])
        }
        // A non-RPC MQ, or no MQ at all, keeps zbus 6's answer.
        admin.request([("cmd", "create_mq"), ("mq_name", "Plain"), ("mq_mode", "1")])
        _ = try admin.receive()
        admin.send("GET /Plain/echo/x HTTP/1.1\r\n\r\n")
        expectReply(try admin.receive(), status: 400, body: "Bad format: command(null) not support")
    }

    @Test("URL RPC to an RPC MQ without a service answers Service Down")
    func serviceDown() throws {
        let node = try startMQNode()
        defer { node.cleanUp() }
        let client = try node.connect()
        client.request([("cmd", "create_mq"), ("mq_name", "Nobody"), ("mq_mode", "9")])
        _ = try client.receive()
        client.send("GET /Nobody/calc/plus?1,2 HTTP/1.1\r\n\r\n")
        expectReply(try client.receive(), status: 404, body: "MQ(Nobody) Service Down")
    }
}
