import ZbusKernel

/// Serves an MQ by calling a legacy service in its own protocol: one message in, the legacy answer out.
///
/// The proxy runtime consumes the adapter's MQ, calls ``call(_:)`` with bounded concurrency and a timeout, and routes
/// the returned message back to the caller.
public protocol ProxyAdapter: Sendable {
    /// Calls the legacy service for one request and returns the reply to route back (status 200, or a 5xx with a
    /// clear body when the service failed).
    func call(_ request: Message) async throws -> Message
    /// Releases connections and other resources.
    func shutdown() async
}

/// Builds adapters of one kind (`http`, `tcp`, or your own) from their YAML entry.
public protocol ProxyAdapterFactory: Sendable {
    /// The keys an adapter entry of this kind accepts, besides the runtime's own (`name`, `kind`, `mq`, `workers`...).
    var configKeys: [String] { get }
    /// Builds an adapter from its entry.
    func makeAdapter(config: ConfigSection) throws(ConfigError) -> any ProxyAdapter
}

extension ExtensionPoint where Value == any ProxyAdapterFactory {
    /// The proxy adapter kinds a node offers its `proxy` module, by kind name (`http`, `tcp`, or your own).
    ///
    /// Declared here, in the small proxy library, rather than by the `proxy` module that reads it, so that a module
    /// contributing a kind depends on this library only, never on another plugin.
    ///
    /// ```swift
    /// contributions.add(KvLineAdapterFactory(), named: "kv-line", to: .proxyAdapterKinds)
    /// ```
    public static var proxyAdapterKinds: ExtensionPoint {
        .named("proxy.adapter-kinds", noun: "proxy adapter kind")
    }
}
