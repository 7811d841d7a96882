@_exported import ZbusKernel
