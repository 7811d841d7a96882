import Foundation

/// Administrative commands on a broker: create, remove and query MQs, and the dedupe keys of an MQ.
///
/// ```swift
/// let admin = MqAdmin(broker: broker)
/// try await admin.create("Orders")
/// let info = try await admin.query("Orders")   // info.unconsumedMsgCount
/// ```
public struct MqAdmin: Sendable {
    /// Where the commands go.
    public let broker: any Broker
    /// The node's `register_token`, if it requires one.
    public var registerToken: String?
    /// The token sent in the `token` header of every command: an MQ's access token (needed to query, remove or
    /// change the keys of a protected MQ), or a token of the node's `auth` section.
    public var token: String?

    /// Creates an admin for `broker`.
    public init(broker: any Broker, registerToken: String? = nil, token: String? = nil) {
        self.broker = broker
        self.registerToken = registerToken
        self.token = token
    }

    /// Creates `mq` (nothing happens if it exists: its mode is not changed).
    ///
    /// - Parameters:
    ///   - mq: the name.
    ///   - mode: its mode bits (a plain durable queue by default).
    ///   - accessToken: a token producers and consumers must present.
    ///   - masterMq: make it a slave that receives a copy of every message produced to this MQ.
    ///   - masterToken: the master's access token.
    /// - Throws: ``ZbusClientError/rejected(cmd:mq:status:body:)`` (400 bad name or mode, 403 wrong register token),
    ///   or a connection error.
    public func create(_ mq: String, mode: QueueMode = .mq, accessToken: String? = nil, masterMq: String? = nil,
                       masterToken: String? = nil) async throws {
        let request = Self.createRequest(mq, mode: mode, accessToken: accessToken, masterMq: masterMq, masterToken: masterToken,
                                         registerToken: registerToken, token: token)
        _ = try await expectOK(request, mq: mq)
    }

    /// The `create_mq` command for `mq`, as ``create(_:mode:accessToken:masterMq:masterToken:)`` sends it; shared with
    /// the consumers that create their MQ on a 404, so that every creator presents its tokens the same way.
    ///
    /// - Parameters:
    ///   - accessToken: the token producers and consumers of the new MQ must present (`access_token`).
    ///   - registerToken: the node's `register_token`.
    ///   - token: the caller's own token (`token` header): under the node's `auth` section, what grants `admin` on
    ///     the name.
    package static func createRequest(_ mq: String, mode: QueueMode, accessToken: String? = nil, masterMq: String? = nil,
                                      masterToken: String? = nil, registerToken: String? = nil, token: String? = nil) -> Message {
        var request = Message()
        request.cmd = "create_mq"
        request.headers[HeaderName.mqName] = mq
        request.headers[HeaderName.mqMode] = String(mode.rawValue)
        request.headers[HeaderName.accessToken] = accessToken
        request.headers[HeaderName.masterMq] = masterMq
        request.headers[HeaderName.masterToken] = masterToken
        request.headers[HeaderName.registerToken] = registerToken
        if let token { request.token = token }
        return request
    }

    /// Removes `mq` and its messages.
    ///
    /// - Returns: `false` when there was no such MQ.
    /// - Throws: ``ZbusClientError/rejected(cmd:mq:status:body:)`` (403 wrong register token), or a connection error.
    @discardableResult
    public func remove(_ mq: String) async throws -> Bool {
        var request = command("remove_mq")
        request.headers[HeaderName.mqName] = mq
        let reply = try await broker.send(request)
        if reply.status == 404 { return false }
        _ = try check(reply, cmd: "remove_mq", mq: mq)
        return true
    }

    /// What the node says about `mq`.
    ///
    /// - Returns: the MQ's info, or `nil` when there is no such MQ.
    /// - Throws: ``ZbusClientError/unexpectedReply(cmd:reason:)`` when the JSON is not MqInfo, or a connection error.
    public func query(_ mq: String) async throws -> MQInfo? {
        var request = command("query_mq")
        request.mq = mq
        let reply = try await broker.send(request)
        if reply.status == 404 { return nil }
        _ = try check(reply, cmd: "query_mq", mq: mq)
        do {
            return try JSONDecoder().decode(MQInfo.self, from: Data(reply.bodyString.utf8))
        } catch {
            throw ZbusClientError.unexpectedReply(cmd: "query_mq", reason: "the body is not MqInfo JSON: \(error)")
        }
    }

    /// Whether `mq` exists.
    public func exists(_ mq: String) async throws -> Bool {
        try await query(mq) != nil
    }

    /// Records a dedupe key for `mq`: a later produce carrying that `key` (in the same group) is refused with 406.
    ///
    /// - Returns: `true` if the key was new.
    public func addKey(_ key: String, group: String? = nil, mq: String) async throws -> Bool {
        var request = command("add_key")
        request.mq = mq
        request.key = key
        request.keyGroup = group
        return try await expectOK(request, mq: mq).bodyString.trimmingWhitespace() == "1"
    }

    /// Forgets dedupe keys of `mq`: one key, a whole group (`key` nil), or every group (both nil).
    ///
    /// - Returns: how many keys were removed.
    @discardableResult
    public func removeKey(_ key: String?, group: String? = nil, mq: String) async throws -> Int {
        var request = command("remove_key")
        request.mq = mq
        request.key = key
        request.keyGroup = group
        let reply = try await expectOK(request, mq: mq)
        guard let count = Int(reply.bodyString.trimmingWhitespace()) else {
            throw ZbusClientError.unexpectedReply(cmd: "remove_key", reason: "expected a count, got '\(reply.bodyString)'")
        }
        return count
    }

    /// Asks the node to answer `test` (a liveness check).
    ///
    /// - Returns: the node's answer (`OK`).
    public func ping() async throws -> String {
        try await expectOK(command("test"), mq: nil).bodyString
    }

    private func command(_ cmd: String) -> Message {
        var request = Message()
        request.cmd = cmd
        request.headers[HeaderName.registerToken] = registerToken
        if let token { request.token = token }
        return request
    }

    private func expectOK(_ request: Message, mq: String?) async throws -> Message {
        try check(try await broker.send(request), cmd: request.cmd ?? "?", mq: mq)
    }

    private func check(_ reply: Message, cmd: String, mq: String?) throws(ZbusClientError) -> Message {
        guard reply.status == 200 else {
            throw .rejected(cmd: cmd, mq: mq, status: reply.status ?? 0, body: reply.bodyString)
        }
        return reply
    }
}
