import Logging

/// Which permission each command needs when the `auth` section is on.
///
/// | commands | needs |
/// |---|---|
/// | `test`, `heartbeat` | nothing (open) |
/// | `produce`, URL-RPC calls | `produce` on the MQ, or its `access_token` |
/// | `consume` | `consume` on the MQ, or its `access_token` |
/// | `route` | `consume` on an MQ the receiver produced to and the router consumed from; or `admin` on it |
/// | `query_mq` | any permission on the MQ, or its `access_token` |
/// | `data` | nothing: lists only the MQs the caller has a permission on |
/// | `create_mq`, `remove_mq`, `add_key`, `remove_key` | `admin` on the MQ, or the `register_token` (and the MQ's `access_token` where it has one) |
/// | tracker commands (`server_join`, `entry_update`, `entry_remove`, `server_leave`, `sub_all`, `tracker_info`) | `tracker: true` |
/// | any other module's command | `admin` on `*` |
///
/// The MQ commands are checked by the MQ module, which knows each MQ's `access_token`; the rest by the dispatcher.
public enum CommandAccess {
    /// Commands whose handler applies the permissions itself (they need the MQ's own tokens).
    public static let checkedByHandler: Set<String> = [
        "produce", "consume", "route", "create_mq", "remove_mq", "query_mq", "data", "add_key", "remove_key",
    ]
    /// The tracker protocol's commands: they need the `tracker` permission.
    public static let tracker: Set<String> = TrackerCommand.reports.union([TrackerCommand.subAll, "tracker_info"])

    /// Why `message` may not run `cmd`, or `nil` when it may.
    static func refusal(of message: Message, cmd: String, policy: AccessPolicy, session: Session) -> String? {
        let caller = policy.caller(token: message.presentedToken, session: session)
        if tracker.contains(cmd) {
            return caller.grants.tracker ? nil : "forbidden: \(cmd) needs the tracker permission (\(caller.label) lacks it)"
        }
        return caller.grants.isAdminEverywhere ? nil : "forbidden: \(cmd) needs the admin permission on * (\(caller.label) lacks it)"
    }
}

/// A command handler behind the dispatcher's access check (``CommandAccess``).
struct AccessCheckedHandler: CommandHandler {
    let cmd: String
    let handler: any CommandHandler
    let policy: AccessPolicy
    let logger: Logger

    func handle(_ request: Message, session: Session) {
        if let refusal = CommandAccess.refusal(of: request, cmd: cmd, policy: policy, session: session) {
            logger.info("command refused", metadata: ["cmd": "\(cmd)", "session": "\(session.id)", "reason": "\(refusal)"])
            return session.send(request.reply(status: 403, body: refusal, includeMq: false))
        }
        handler.handle(request, session: session)
    }
}
