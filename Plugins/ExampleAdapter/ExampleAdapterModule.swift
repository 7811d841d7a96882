import Logging
import ZbusKernel
import ZbusProxy

// Step 1 of the README walk-through: a module that contributes an adapter kind. It has no commands and no keys of its
// own; it contributes to the `.proxyAdapterKinds` extension point (declared by the small `ZbusProxy` library, so this
// module never imports the `proxy` plugin), where the `proxy` module finds the kind and runs it like the built-in ones.

/// The `example-adapter` plugin module: contributes the `kv-line` adapter kind, which serves an MQ from a small
/// memcached-text-style key-value service (`get k`, `set k v`, `delete k`, one line each way).
///
/// Not in `PluginRegistry.standard`: a program registers it like any module of its own,
/// `PluginRegistry.standard.registering(ExampleAdapterModule.self)`, and its YAML can then say
///
/// ```yaml
/// modules:
///   - module: mq
///   - module: example-adapter
///   - module: proxy
///     adapters:
///       - { name: cache, kind: kv-line, mq: Cache, target: 127.0.0.1:11311, timeout: 2s }
/// ```
public final class ExampleAdapterModule: PluginModule {
    /// `example-adapter`.
    public static let name = "example-adapter"
    /// One line for `zbus modules`.
    public static let summary = "Example custom module: the `kv-line` proxy adapter kind for a line-based key-value service."

    /// Takes no keys: the adapter entries live in the `proxy` module's section.
    public init(setup: ModuleSetup) throws(ConfigError) {}

    /// `kv-line`.
    public func contribute(to contributions: inout ModuleContributions) {
        contributions.add(KvLineAdapterFactory(), named: "kv-line", to: .proxyAdapterKinds)
    }
}
