/// A client speaks the zbus protocol: its message types are part of the client's API.
@_exported import ZbusProtocol
/// TLS options (``ClientTLS``) are part of ``ClientConfiguration``.
@_exported import ZbusTLS
