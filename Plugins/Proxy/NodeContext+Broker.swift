import Logging
import ZbusClient
import ZbusInProcess
import ZbusKernel

extension NodeContext {
    /// A broker for this node's own MQs, in-process: no socket, no loopback port, no address to work out.
    ///
    /// The one place the module builds it, so that moving the in-process connector to another target changes only
    /// this function (and this file's imports).
    func ownNodeBroker(configuration: ClientConfiguration, poolSize: Int, logger: Logger) -> any Broker {
        InProcessBroker(node: node, configuration: configuration, poolSize: poolSize, logger: logger)
    }
}
