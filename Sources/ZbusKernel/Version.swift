/// The zbus version.
public enum ZbusVersion {
    /// The version string printed by `zbus --version`.
    public static let current = "0.1.0"
    /// The protocol generation this node speaks.
    public static let protocolVersion = "zbus 6.3"
}
