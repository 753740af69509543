// swift-tools-version: 6.1
import PackageDescription

/// Settings every Sluice target shares: Swift 6 mode, explicit existentials, explicit imports, and zero warnings.
let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
    .unsafeFlags(["-warnings-as-errors"]),
]

let package = Package(
    name: "Sluice",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "sluice", targets: ["sluice"]),
        .library(name: "SluiceKafka", targets: ["SluiceKafka"]),
        .library(name: "SluiceText", targets: ["SluiceText"]),
        .library(name: "SluiceShards", targets: ["SluiceShards"]),
        .library(name: "SluicePipeline", targets: ["SluicePipeline"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/grpc/grpc-swift-2", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport", from: "2.9.2"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    ],
    targets: [
        // System-library shims. Each has a module map and one header; no C type leaves its adapter module.
        .systemLibrary(
            name: "CRdKafka", pkgConfig: "rdkafka", providers: [.apt(["librdkafka-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CXXHash", pkgConfig: "libxxhash", providers: [.apt(["libxxhash-dev"])]),
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "COpenSSL", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),

        // A few scanning loops in C with SSE2 (Swift's SIMD types compile to generic code here).
        .target(name: "CSluiceScan"),
        // Pure core: text stages. No I/O, no clocks.
        .target(name: "SluiceText", dependencies: ["CXXHash", "COpenSSL", "CSluiceScan"], swiftSettings: strictSettings),
        // Configuration files: YAML sections, environment interpolation, errors that name file and key.
        .target(name: "SluiceConfig", dependencies: [.product(name: "Yams", package: "Yams")], swiftSettings: strictSettings),
        // Adapters.
        .target(
            name: "SluiceShards",
            dependencies: [
                "CZstd", "COpenSSL", "SluiceText", .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
            ],
            swiftSettings: strictSettings),
        .target(
            name: "SluiceKafka",
            dependencies: [
                "CRdKafka",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ],
            swiftSettings: strictSettings),
        // Drivers.
        .target(
            name: "SluicePipeline",
            dependencies: [
                "SluiceText", "SluiceShards", "SluiceKafka", "SluiceConfig", "SluiceTrain",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strictSettings),
        .target(
            name: "SluiceConnectors",
            dependencies: [
                "SluiceKafka", "SluiceText", "SluiceShards", "SluiceConfig",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Hummingbird", package: "hummingbird"),
            ],
            swiftSettings: strictSettings),
        .target(
            name: "SluiceTrain", dependencies: ["SluiceShards", "SluiceKafka", "SluiceConfig", "COpenBLAS"],
            swiftSettings: strictSettings),
        .target(
            name: "SluiceGateway",
            dependencies: [
                "SluiceTrain", "SluiceShards", "SluiceKafka", "SluiceText",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings),
        // gRPC beside REST: code generated from proto/model_service.proto (committed; see proto/README.md) and the
        // service over the gateway's generation scheduler.
        .target(
            name: "SluiceGRPC",
            dependencies: [
                "SluiceGateway", "SluiceTrain",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]),
        .executableTarget(
            name: "sluice",
            dependencies: [
                "SluiceKafka", "SluicePipeline", "SluiceConnectors", "SluiceText", "SluiceShards", "SluiceConfig", "SluiceTrain",
                "SluiceGateway", "SluiceGRPC",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strictSettings),

        .testTarget(
            name: "SluiceKafkaTests",
            dependencies: [
                "SluiceKafka", .product(name: "Logging", package: "swift-log"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ],
            swiftSettings: strictSettings),
        .testTarget(
            name: "SluiceTextTests",
            dependencies: ["SluiceText", .product(name: "PropertyBased", package: "swift-property-based")],
            swiftSettings: strictSettings),
        .testTarget(
            name: "SluiceShardsTests",
            dependencies: ["SluiceShards", "SluiceText", .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: strictSettings),
        .testTarget(
            name: "SluicePipelineTests", dependencies: ["SluicePipeline", "SluiceKafka", "SluiceText", "SluiceConfig", "SluiceTrain", "SluiceShards"],
            swiftSettings: strictSettings),
        .testTarget(
            name: "SluiceTrainTests", dependencies: ["SluiceTrain", "SluiceShards", "SluiceKafka"], exclude: ["Fixtures"],
            swiftSettings: strictSettings),
        .testTarget(name: "SluiceGatewayTests", dependencies: ["SluiceGateway", "SluiceKafka"], swiftSettings: strictSettings),
        .testTarget(
            name: "SluiceConnectorsTests", dependencies: ["SluiceConnectors", "SluiceText", "SluiceKafka", "SluiceConfig"],
            swiftSettings: strictSettings),
        .testTarget(
            name: "SluiceIntegrationTests",
            dependencies: [
                "SluiceKafka", "SluiceShards", "SluiceGRPC", "SluiceTrain", .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
            ],
            swiftSettings: strictSettings),
    ],
    swiftLanguageModes: [.v6]
)
