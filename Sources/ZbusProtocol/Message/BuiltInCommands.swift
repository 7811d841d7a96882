/// The commands every zbus node answers itself, whatever modules it loads (clients send `heartbeat` to keep idle
/// connections open).
public enum BuiltInCommands {
    /// `test` answers `OK`.
    public static let test = "test"
    /// `heartbeat` is accepted silently.
    public static let heartbeat = "heartbeat"
    /// All built-in command names.
    public static let names = [test, heartbeat]
}
