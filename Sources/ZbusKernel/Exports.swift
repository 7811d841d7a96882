/// The kernel speaks the zbus protocol: its message types are part of every module's API.
@_exported import ZbusProtocol
