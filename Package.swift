// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "nn",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "nn", targets: ["nn"]),
        .executable(name: "nn-coordinator", targets: ["nn-coordinator"]),
        .executable(name: "nn-worker", targets: ["nn-worker"]),
        .library(name: "NNCore", targets: ["NNCore"]),
        .library(name: "NNData", targets: ["NNData"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
    ],
    targets: [
        // System libraries. Headers and libraries sit on the default search paths on Debian,
        // so the module maps link them directly instead of going through pkg-config.
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS"),
        .systemLibrary(name: "CGFShare", path: "Sources/CGFShare"),
        .systemLibrary(name: "CPNG", path: "Sources/CPNG"),
        .systemLibrary(name: "CSodium", path: "Sources/CSodium"),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib"),
        .systemLibrary(name: "CZmq", path: "Sources/CZmq"),

        // Vectorised element-wise kernels; see CKernels.h for why they are C.
        .target(
            name: "CKernels",
            cSettings: [.unsafeFlags(["-O3", "-fno-math-errno", "-ffp-contract=off"])]),
        .target(name: "CNNSystem"),
        .target(name: "NNCore", dependencies: ["CBLAS", "CKernels"]),
        .target(name: "NNData", dependencies: ["CZlib", "CSodium", "NNCore"]),
        .target(name: "NNProtocol", dependencies: ["NNCore"]),
        .target(
            name: "NNCluster",
            dependencies: [
                "NNCore", "NNData", "NNProtocol", "CZmq", "CSodium", "CGFShare", "CNNSystem", .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]),
        // TensorBoard event files; the protobuf code is generated from tensorboard.proto and committed.
        .target(
            name: "NNTensorBoard",
            dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")],
            exclude: ["tensorboard.proto"]),
        // ONNX export; the protobuf code is generated from onnx.proto (a subset of ONNX's) and committed.
        .target(
            name: "NNONNX",
            dependencies: ["NNCore", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
            exclude: ["onnx.proto"]),
        // Inference over HTTP for `nn serve`.
        .target(
            name: "NNServing",
            dependencies: [
                "NNCore", "NNData", "CPNG", .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"), .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"), .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]),
        .target(
            name: "NNCommands",
            dependencies: [
                "NNCore", "NNData", "NNProtocol", "NNCluster", "NNTensorBoard", "NNONNX", "NNServing", "CNNSystem",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Hummingbird", package: "hummingbird"),
            ]),
        // Thin executables over the commands.
        .executableTarget(name: "nn", dependencies: ["NNCommands"]),
        .executableTarget(name: "nn-coordinator", dependencies: ["NNCommands"]),
        .executableTarget(name: "nn-worker", dependencies: ["NNCommands"]),
        // libFuzzer target for the frame decoder; it has no main of its own, so build it only with
        // `--sanitize fuzzer` (see scripts/fuzz).
        .executableTarget(name: "nn-fuzz-codec", dependencies: ["NNProtocol"]),
        // libFuzzer targets for the checkpoint reader, experiment files and prediction requests, built like nn-fuzz-codec.
        .executableTarget(name: "nn-fuzz-checkpoint", dependencies: ["NNCore"]),
        .executableTarget(name: "nn-fuzz-experiment", dependencies: ["NNCluster"]),
        .executableTarget(name: "nn-fuzz-request", dependencies: ["NNServing"]),
        // The fuzz targets' seed corpora, made from the code's own types, and the tool that writes them.
        .target(name: "FuzzSeeds", dependencies: ["NNCluster", "NNCore", "NNData", "NNProtocol", "CPNG"]),
        .executableTarget(name: "nn-fuzz-seeds", dependencies: ["FuzzSeeds"]),

        // Helpers shared by the test targets.
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "NNCoreTests", dependencies: ["NNCore"]),
        .testTarget(name: "NNDataTests", dependencies: ["NNData", "CZlib", "TestSupport"]),
        .testTarget(name: "NNProtocolTests", dependencies: ["NNProtocol"]),
        .testTarget(name: "NNServingTests", dependencies: ["NNServing", "NNCore", "FuzzSeeds"]),
        .testTarget(name: "NNTensorBoardTests", dependencies: ["NNTensorBoard", "TestSupport"]),
        .testTarget(name: "FuzzSeedsTests", dependencies: ["FuzzSeeds", "NNCluster", "NNCore", "NNProtocol", "NNServing"]),
        .testTarget(
            name: "NNClusterTests",
            dependencies: ["NNCluster", "CZmq", "NNCore", "NNData", "NNProtocol", "TestSupport", .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "nnTests", dependencies: ["nn", "nn-coordinator", "nn-worker", "NNData", "TestSupport"]),
    ]
)
