import ZbusRPC

/// The services an `rpc` module can host, by the name YAML gives them (`service: calc`).
///
/// The `zbus` binary hosts ``BuiltInRpcServices``. A program that embeds a node hosts its own by naming a catalogue in
/// the module type, one conformance and one registration:
///
/// ```swift
/// enum MyServices: RpcServiceCatalog {
///     static var services: [String: RpcProcessor] {
///         var orders = RpcProcessor()
///         orders.module("orders") { $0.method("count") { () in 42 } }
///         return BuiltInRpcServices.services.merging(["orders": orders]) { _, mine in mine }
///     }
/// }
/// let registry = PluginRegistry.standard.registering(RPCHostModule<MyServices>.self)   // replaces `rpc`
/// let node = try ZbusNode(yaml: yaml, registry: registry)                               // `service: orders` in YAML
/// ```
///
/// (For services built from runtime state, such as a database pool, use ``MqRpcService`` and ``DirectRpcServer``
/// directly instead.)
public protocol RpcServiceCatalog {
    /// The processors, by service name.
    static var services: [String: RpcProcessor] { get }
}

/// The services shipped with zbus: `calc`, a small demo (see ``CalcService``).
public enum BuiltInRpcServices: RpcServiceCatalog {
    /// `calc`.
    public static var services: [String: RpcProcessor] { ["calc": CalcService.processor] }
}
