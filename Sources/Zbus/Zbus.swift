@_exported import ZbusKernel
@_exported import ZbusClient
@_exported import ZbusInProcess
@_exported import ZbusMQ
@_exported import ZbusRPC
@_exported import ZbusRPCModule
@_exported import ZbusProxyModule
import ZbusExampleAdapter

extension PluginRegistry {
    /// The modules that ship with zbus, ready to be named in YAML.
    public static var standard: PluginRegistry {
        PluginRegistry()
            .registering(MQModule.self)
            .registering(RPCModule.self)
            .registering(ProxyModule.self)
            .registering(ExampleAdapterModule.self)
    }
}
