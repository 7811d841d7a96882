@_exported import ZbusKernel
@_exported import ZbusClient
@_exported import ZbusInProcess
@_exported import ZbusMQ
@_exported import ZbusRPC
@_exported import ZbusRPCModule
@_exported import ZbusProxy
@_exported import ZbusProxyModule
@_exported import ZbusMonitorModule
@_exported import ZbusTrackerModule

extension PluginRegistry {
    /// The modules that ship with zbus, ready to be named in YAML: `mq`, `rpc`, `proxy`, `tracker` and `monitor`.
    ///
    /// The example module (`example-adapter`, target `ZbusExampleAdapter`) is not among them: it is a
    /// walk-through of a custom module, and a program that wants it registers it like any of its own
    /// (`PluginRegistry.standard.registering(ExampleAdapterModule.self)`).
    public static var standard: PluginRegistry {
        PluginRegistry()
            .registering(MQModule.self)
            .registering(RPCModule.self)
            .registering(ProxyModule.self)
            .registering(MonitorModule.self)
            .registering(TrackerModule.self)
    }
}
