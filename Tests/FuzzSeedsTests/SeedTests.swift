import FuzzSeeds
import Foundation
import NNCluster
import NNCore
import NNProtocol
import NNServing
import Testing

/// Every fuzz seed is a valid input of its target, so the fuzzers start inside the formats, not at their first
/// check; made from the code's types, they cannot go stale.
@Suite struct SeedTests {
    @Test func codecSeedsDecode() throws {
        let seeds = try FuzzSeeds.seeds(.codec)
        #expect(seeds.count == Message.examples.count && Set(Message.examples.map(\.type)).count == MessageType.allCases.count)
        for (seed, message) in zip(seeds, Message.examples) {
            #expect(try WireCodec.decode(FuzzInput.frames(seed.bytes)) == message, "seed \(seed.name)")
        }
    }

    @Test func checkpointSeedsLoad() throws {
        let seeds = try FuzzSeeds.seeds(.checkpoint)
        #expect(seeds.count >= 3)
        let loaded = try seeds.map { try Checkpoint.decode($0.bytes, source: $0.name) }
        #expect(loaded.contains { $0.network.spec.batchNorm } && loaded.contains { $0.network.spec.residualBlocks > 0 })
    }

    @Test func experimentSeedsValidate() throws {
        let seeds = try FuzzSeeds.seeds(.experiment)
        let experiments = try seeds.map { try Experiment.decode(Data($0.bytes), source: $0.name) }
        #expect(Set(experiments.map(\.strategy.kind)).count == StrategySpec.Kind.allCases.count)
        #expect(experiments.contains { $0.adversaries != nil })
    }

    @Test func requestSeedsAreAnswered() throws {
        let seeds = try FuzzSeeds.seeds(.request)
        var json = 0, pictures = 0
        for seed in seeds {
            if seed.name.hasPrefix("json") {
                _ = try seed.bytes.withUnsafeBytes { try InstancesReader.read($0, width: 4) }
                json += 1
            } else {
                #expect(try DigitLayout.mnistInput(InkImage(decoding: seed.bytes)).contains { $0 > 0.5 }, "seed \(seed.name)")
                pictures += 1
            }
        }
        #expect(json == 2 && pictures == 3)
    }
}
