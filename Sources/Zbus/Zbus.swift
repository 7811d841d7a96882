@_exported import ZbusKernel
@_exported import ZbusMQ

extension PluginRegistry {
    /// The modules that ship with zbus, ready to be named in YAML.
    public static var standard: PluginRegistry {
        PluginRegistry()
            .registering(MQModule.self)
    }
}
