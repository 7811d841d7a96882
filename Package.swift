// swift-tools-version:6.2
import PackageDescription

let strict: [SwiftSetting] = [.swiftLanguageMode(.v6)]

let package = Package(
    name: "zbus",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "zbus", targets: ["zbus"]),
        .library(name: "Zbus", targets: ["Zbus"]),
        .library(name: "ZbusProtocol", targets: ["ZbusProtocol"]),
        .library(name: "ZbusKernel", targets: ["ZbusKernel"]),
        .library(name: "ZbusClient", targets: ["ZbusClient"]),
        .library(name: "ZbusTLS", targets: ["ZbusTLS"]),
        .library(name: "ZbusInProcess", targets: ["ZbusInProcess"]),
        .library(name: "ZbusStore", targets: ["ZbusStore"]),
        .library(name: "ZbusRPC", targets: ["ZbusRPC"]),
        .library(name: "ZbusProxy", targets: ["ZbusProxy"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-atomics.git", from: "1.3.0"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.6.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
    ],
    targets: [
        .target(
            name: "CZbusCRC32C",
            path: "Sources/CZbusCRC32C"
        ),
        .target(
            name: "CZbusSystem",
            path: "Sources/CZbusSystem"
        ),
        .target(
            name: "ZbusProtocol",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .target(
            // TLS files and contexts, shared by the node (its TLS port, tracker links) and the client library.
            name: "ZbusTLS",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "ZbusStore",
            dependencies: [
                "CZbusCRC32C",
                "CZbusSystem",
                .product(name: "NIOCore", package: "swift-nio"),
                // Only for the debug check that no blocking call runs on an event loop (BlockingIOCheck).
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "ZbusKernel",
            dependencies: [
                "ZbusProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                // TLSUserEvent, to see a handshake complete (TLSHandshakeLogger).
                .product(name: "NIOTLS", package: "swift-nio"),
                // SHA-256 of access tokens (the `auth` section compares digests).
                .product(name: "Crypto", package: "swift-crypto"),
                "ZbusTLS",
            ],
            swiftSettings: strict
        ),
        .target(
            name: "ZbusClient",
            dependencies: [
                "ZbusProtocol", "ZbusTLS",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Atomics", package: "swift-atomics"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "ZbusInProcess",
            dependencies: [
                "ZbusKernel", "ZbusClient",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "ZbusMQ",
            dependencies: [
                "ZbusKernel", "ZbusStore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "HeapModule", package: "swift-collections"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ],
            path: "Plugins/MQ",
            swiftSettings: strict
        ),
        .target(
            name: "ZbusRPC",
            dependencies: [
                "ZbusKernel", "ZbusClient",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "ZbusRPCModule",
            dependencies: [
                "ZbusKernel", "ZbusClient", "ZbusInProcess", "ZbusRPC",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ],
            path: "Plugins/RPC",
            swiftSettings: strict
        ),
        .target(
            name: "ZbusProxy",
            dependencies: ["ZbusKernel"],
            swiftSettings: strict
        ),
        .target(
            name: "ZbusProxyModule",
            dependencies: [
                "ZbusKernel", "ZbusClient", "ZbusInProcess", "ZbusProxy",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ],
            path: "Plugins/Proxy",
            swiftSettings: strict
        ),
        .target(
            name: "ZbusTrackerModule",
            dependencies: [
                "ZbusKernel",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Plugins/Tracker",
            swiftSettings: strict
        ),
        .testTarget(
            name: "ZbusTrackerTests",
            dependencies: [
                "zbus", "Zbus", "ZbusTrackerModule", "ZbusMQ", "ZbusKernel", "ZbusTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "ZbusExampleAdapter",
            dependencies: [
                "ZbusKernel", "ZbusProxy",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Plugins/ExampleAdapter",
            swiftSettings: strict
        ),
        .testTarget(
            name: "ZbusProxyTests",
            dependencies: [
                "zbus", "Zbus", "ZbusProxyModule", "ZbusExampleAdapter", "ZbusRPC", "ZbusClient", "ZbusTestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "zbus-proxy-bench",
            dependencies: [
                "ZbusRPC", "ZbusClient",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "Benchmarks/ProxyBench",
            swiftSettings: strict
        ),
        .target(
            name: "ZbusMonitorModule",
            dependencies: [
                "ZbusKernel",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Plugins/Monitor",
            swiftSettings: strict
        ),
        .target(
            name: "Zbus",
            dependencies: ["ZbusKernel", "ZbusClient", "ZbusInProcess", "ZbusMQ", "ZbusRPC", "ZbusRPCModule", "ZbusProxy", "ZbusProxyModule",
                           "ZbusMonitorModule", "ZbusTrackerModule"],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "zbus",
            dependencies: [
                "Zbus",
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "zbus-fuzz-decoder",
            dependencies: [
                "ZbusProtocol", "ZbusMQ",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "Tests/Fuzz/DecoderFuzzer",
            swiftSettings: strict
        ),
        .target(
            name: "ZbusTestSupport",
            dependencies: [
                "ZbusKernel",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/ZbusTestSupport",
            swiftSettings: strict
        ),
        .testTarget(
            name: "ZbusProtocolTests",
            dependencies: [
                "ZbusProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "ZbusMQTests",
            dependencies: [
                "ZbusMQ", "ZbusKernel", "ZbusTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "ZbusKernelTests",
            dependencies: [
                "ZbusKernel", "ZbusTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "ZbusIntegrationTests",
            // The example programs are dependencies so that SwiftPM builds them for ExamplesTests, which runs them.
            dependencies: ["zbus", "Zbus", "ZbusMQ", "ZbusStore", "ZbusTestSupport",
                           "zbus-example-producer", "zbus-example-consumer", "zbus-example-embedded"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "ZbusStoreTests",
            dependencies: [
                "ZbusStore", "ZbusTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "ZbusClientTests",
            dependencies: [
                "zbus", "Zbus", "ZbusClient", "ZbusTestSupport", "zbus-example-producer",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "zbus-example-producer",
            dependencies: ["ZbusClient"],
            path: "Examples/Producer",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "zbus-example-consumer",
            dependencies: ["ZbusClient"],
            path: "Examples/Consumer",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "zbus-example-embedded",
            dependencies: ["Zbus"],
            path: "Examples/EmbeddedNode",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "zbus-failover-bench",
            dependencies: ["ZbusClient", .product(name: "Logging", package: "swift-log")],
            path: "Benchmarks/FailoverBench",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "zbus-client-bench",
            dependencies: ["ZbusClient", .product(name: "NIOPosix", package: "swift-nio")],
            path: "Benchmarks/ClientBench",
            swiftSettings: strict
        ),
        .testTarget(
            name: "ZbusRPCTests",
            dependencies: [
                "zbus", "Zbus", "ZbusRPC", "ZbusRPCModule", "ZbusTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "zbus-rpc-bench",
            dependencies: [
                "ZbusRPC",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Benchmarks/RPCBench",
            swiftSettings: strict
        ),
    ]
)
