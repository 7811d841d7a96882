/// The kernel speaks the zbus protocol: its message types are part of every module's API.
@_exported import ZbusProtocol
/// `NodeConfig.tls` and the client TLS sections of modules are ZbusTLS types.
@_exported import ZbusTLS
