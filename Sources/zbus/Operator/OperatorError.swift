import Zbus

/// Why an operator command (`mq`, `produce`, `consume`, `cluster`) failed: each case names the server and what
/// failed, and maps to one of the exit statuses `zbus --help` and docs/cli.md list.
enum OperatorError: Error, CustomStringConvertible {
    /// No connection could be made (refused, unreachable, or none within the connect timeout).
    case unreachable(server: String, reason: String)
    /// The connection closed before the answer came.
    case connectionLost(server: String, request: String, reason: String?)
    /// The server accepted the request and said nothing within `--timeout`.
    case timedOut(server: String, request: String, after: Duration)
    /// The server answered with an error status.
    case refused(server: String, request: String, status: Int, body: String)
    /// The server has no MQ of that name.
    case unknownMQ(server: String, mq: String, request: String)
    /// The server's answer is not what the command expected (not a zbus node, or not a tracker).
    case unexpectedAnswer(server: String, request: String, reason: String)
    /// `cluster` was pointed at a server that does not answer `sub_all` as a tracker.
    case notATracker(server: String, answer: String)
    /// `produce --file` could not read its file.
    case unreadableInput(path: String, reason: String)
    /// `consume` got fewer messages than `--count` within `--timeout`.
    case incomplete(server: String, mq: String, wanted: Int, got: Int, within: Duration)

    /// The process's exit status for this failure.
    var exitCode: Int32 {
        switch self {
        case .refused, .unknownMQ, .unexpectedAnswer, .notATracker: return OperatorExit.refused
        case .incomplete: return OperatorExit.incomplete
        case .unreadableInput: return OperatorExit.noInput
        case .unreachable, .connectionLost: return OperatorExit.unavailable
        case .timedOut: return OperatorExit.timedOut
        }
    }

    /// One line: the server, the request, what happened and what to do.
    var description: String {
        switch self {
        case .unreachable(let server, let reason):
            return "cannot connect to \(server): \(reason) (is a zbus node running there? pass --server HOST:PORT)"
        case .connectionLost(let server, let request, let reason):
            return "\(server) closed the connection before answering \(request)" + (reason.map { " (\($0))" } ?? "")
        case .timedOut(let server, let request, let after):
            return "no answer from \(server) to \(request) within \(Self.seconds(after)) (is it a zbus node? raise --timeout for a slow one)"
        case .refused(let server, let request, let status, let body):
            return "\(server) refused \(request): \(status) \(body)" + Self.hint(status: status)
        case .unknownMQ(let server, let mq, let request):
            return "\(server) has no MQ named '\(mq)' (\(request) answered 404; `zbus mq list` shows what exists)"
        case .unexpectedAnswer(let server, let request, let reason):
            return "unexpected answer from \(server) to \(request): \(reason)"
        case .notATracker(let server, let answer):
            return "\(server) is not a tracker: it answered `sub_all` with \(answer) (pass a node running the tracker module with --server)"
        case .unreadableInput(let path, let reason):
            return "cannot read \(path): \(reason)"
        case .incomplete(let server, let mq, let wanted, let got, let within):
            return "\(got) of \(wanted) messages from MQ '\(mq)' on \(server) within \(Self.seconds(within)) (raise --timeout to wait longer)"
        }
    }

    /// Seconds as an operator writes them: `1 s`, `2.5 s`.
    static func seconds(_ duration: Duration) -> String {
        let (whole, attoseconds) = duration.components
        if attoseconds == 0 { return "\(whole) s" }
        let value = Double(whole) + Double(attoseconds) / 1e18
        return "\((value * 1000).rounded() / 1000) s"
    }

    private static func hint(status: Int) -> String {
        switch status {
        case 403: return " (pass the right token with --token)"
        default: return ""
        }
    }

    /// The failure of `request` to `server` as the client reported it.
    static func from(_ error: any Error, server: String, request: String) -> OperatorError {
        if let error = error as? OperatorError { return error }
        guard let error = error as? ZbusClientError else {
            return .unexpectedAnswer(server: server, request: request, reason: "\(error)")
        }
        switch error {
        case .invalidAddress(_, let reason), .connectFailed(_, let reason):
            // The client's reason starts with the address the message already names.
            let prefix = server + ": "
            return .unreachable(server: server, reason: reason.hasPrefix(prefix) ? String(reason.dropFirst(prefix.count)) : reason)
        case .connectionClosed(_, _, _, let reason):
            return .connectionLost(server: server, request: request, reason: reason)
        case .timedOut(_, _, _, let after):
            return .timedOut(server: server, request: request, after: after)
        case .clientClosed:
            return .connectionLost(server: server, request: request, reason: "the client was closed")
        case .rejected(_, let mq, let status, let body):
            if status == 404, let mq, body.hasSuffix("Not Found") { return .unknownMQ(server: server, mq: mq, request: request) }
            return .refused(server: server, request: request, status: status, body: body)
        case .unexpectedReply(_, let reason):
            return .unexpectedAnswer(server: server, request: request, reason: reason)
        case .noBroker(_, _, let reason):
            return .unreachable(server: server, reason: reason)
        case .duplicateRequestId, .missingSender, .unsupported:
            return .unexpectedAnswer(server: server, request: request, reason: error.description)
        }
    }
}

/// The exit statuses of the operator commands, beside the node's own (0, 1, 2, 64: see ``ZbusCommand/exitCodes``).
/// The values past 64 are the BSD `sysexits.h` ones, which supervisors and shells already know.
enum OperatorExit {
    /// The server answered with an error (4xx/5xx, an unknown MQ) or with something that is not zbus.
    static let refused: Int32 = 1
    /// `consume` got fewer messages than asked within `--timeout`.
    static let incomplete: Int32 = 3
    /// `produce --file` cannot read its file (`EX_NOINPUT`).
    static let noInput: Int32 = 66
    /// The server cannot be reached, or dropped the connection (`EX_UNAVAILABLE`).
    static let unavailable: Int32 = 69
    /// The server did not answer within `--timeout` (`EX_TEMPFAIL`).
    static let timedOut: Int32 = 75
}
