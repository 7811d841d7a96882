// `import ZbusRPC` brings the client library too: invokers and services run on its brokers and connections.
@_exported import ZbusClient
