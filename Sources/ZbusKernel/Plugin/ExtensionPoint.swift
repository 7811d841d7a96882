/// A typed place where modules contribute values: commands, codecs, adapter kinds, or whatever a module that consumes
/// them declares next (monitor pages, metrics, tracker roles).
///
/// Whoever consumes the contributions declares the point, as a static property, where every contributor can see it
/// without depending on the consumer: the kernel declares ``commands`` and ``defaultRoute``; the RPC library declares
/// its codecs; the proxy library its adapter kinds.
///
/// ```swift
/// extension ExtensionPoint where Value == any MetricSource {
///     /// Metrics shown at `/metrics`, by name.
///     public static var metrics: Self { .named("monitor.metrics", noun: "metric source") }
/// }
/// // A contributing module:      contributions.add(QueueDepths(), named: "queue_depth", to: .metrics)
/// // The consuming module, at start:  context.contributions.values(of: .metrics)
/// ```
///
/// A point is either *named* (any number of contributions, one per name: two modules contributing the same name is a
/// configuration error naming both) or *exclusive* (at most one contribution in the whole node).
public struct ExtensionPoint<Value: Sendable>: Sendable {
    /// Identifies the point among all points (for example `rpc.codecs`); two points with the same id are the same point.
    public let id: String
    /// What one contribution is called in error messages (`command`, `RPC codec`).
    public let noun: String
    /// How error messages say that a module contributes (`answers`, `contributes`, `claims`).
    public let verb: String
    /// Whether at most one module may contribute (``exclusive(_:noun:verb:)``).
    public let isExclusive: Bool
    /// The name a value contributes under, when the value knows it (a codec's `name`); lets a module write
    /// `add(value, to: point)`.
    let nameOf: (@Sendable (Value) -> String)?

    /// A point taking any number of contributions, each under its own name.
    ///
    /// - Parameters:
    ///   - id: a unique id, prefixed by the declaring target's concern (`rpc.codecs`).
    ///   - noun: what one contribution is called in error messages.
    ///   - verb: how a module contributes, in error messages.
    ///   - nameOf: the name of a value, when it carries one; without it contributors name each value.
    public static func named(_ id: String, noun: String, verb: String = "contributes",
                             nameOf: (@Sendable (Value) -> String)? = nil) -> ExtensionPoint {
        ExtensionPoint(id: id, noun: noun, verb: verb, isExclusive: false, nameOf: nameOf)
    }

    /// A point that at most one module of a node may contribute to.
    ///
    /// - Parameters:
    ///   - id: a unique id.
    ///   - noun: what the contribution is called in error messages (`default route`).
    ///   - verb: how a module contributes, in error messages.
    public static func exclusive(_ id: String, noun: String, verb: String = "claims") -> ExtensionPoint {
        ExtensionPoint(id: id, noun: noun, verb: verb, isExclusive: true, nameOf: nil)
    }

    /// The key under which ``ModuleContributions`` files the point's values: its id and its value type, so that a
    /// point redeclared with another type never hands out values of the wrong type.
    var key: ExtensionPointKey { ExtensionPointKey(id: id, valueType: ObjectIdentifier(Value.self)) }
}

/// The identity of an ``ExtensionPoint``.
struct ExtensionPointKey: Hashable, Sendable {
    let id: String
    let valueType: ObjectIdentifier
}

extension ExtensionPoint where Value == any CommandHandler {
    /// The commands a node answers, by `cmd` value. Declared by the kernel, which dispatches them.
    ///
    /// ```swift
    /// contributions.add(ProduceHandler(broker), named: "produce", to: .commands)
    /// ```
    public static var commands: ExtensionPoint {
        .named("kernel.commands", noun: "command", verb: "answers")
    }

    /// Where requests that name no command go (neither a `cmd` header nor `?cmd=` in the URL); without a claim they
    /// are answered 400. Only one module of a node may claim it. The `mq` module does, for URL calls of RPC-mode MQs
    /// (`/<mq>/<module>/<method>?params=...`).
    public static var defaultRoute: ExtensionPoint {
        .exclusive("kernel.default-route", noun: "the default route (requests without a command)")
    }

    /// Web pages and endpoints, by exact URL path (`/`, `/metrics`, `/health`): a request naming no command (neither
    /// a `cmd` header nor `?cmd=` in the URL) whose path is one of these goes to its handler, ahead of the default
    /// route. The `monitor` module serves its page and endpoints this way.
    ///
    /// ```swift
    /// contributions.add(HealthHandler(), named: "/health", to: .httpPaths)
    /// ```
    public static var httpPaths: ExtensionPoint {
        .named("kernel.http-paths", noun: "URL path", verb: "serves")
    }
}
