import Foundation
import NNCluster
import NNCore
import NNData
import NNProtocol

/// The starting corpora of the fuzz targets, made from the code's own types so that they follow every change:
/// each seed decodes and validates (a test checks it), and the fuzzer mutates from there.
public enum FuzzSeeds {
    public enum Target: String, CaseIterable, Sendable { case codec, checkpoint, experiment }

    public static func seeds(_ target: Target) throws -> [(name: String, bytes: [UInt8])] {
        switch target {
        case .codec:
            return FuzzInput.seeds.map { ($0.name, $0.input) }
        case .checkpoint:
            return try checkpointModels.enumerated().map { i, spec in
                ("\(i)-\(spec.widths.map(String.init).joined(separator: "-"))",
                 try Checkpoint(network: Network(spec: spec, seed: 1), metadata: ["test_accuracy": "0.5"]).encoded())
            }
        case .experiment:
            return try experiments.map { ($0.name, Array(try JSONEncoder.sorted.encode($0))) }
        }
    }

    /// Small models with every kind of layer.
    static var checkpointModels: [ModelSpec] {
        [try! ModelSpec(widths: [4, 3]), try! ModelSpec(widths: [4, 5, 3], activation: .tanh, batchNorm: true),
         try! ModelSpec(widths: [4, 6, 3], dropout: 0.2, residualBlocks: 1, loss: .binaryCrossEntropy)]
    }

    /// Experiments with every partition, strategy and adversary kind.
    static var experiments: [Experiment] {
        let model = try! ModelSpec(widths: [784, 8, 10])
        let partitions: [PartitionSpec] = [.iid, PartitionSpec(kind: .shards, shardsPerClient: 2), PartitionSpec(kind: .dirichlet, alpha: 0.3),
                                           PartitionSpec(kind: .lognormal, sigma: 1)]
        let strategies: [StrategySpec] = [StrategySpec(kind: .fedavg), StrategySpec(kind: .fedprox, mu: 0.1),
                                          StrategySpec(kind: .fedavgm, serverLearningRate: 1, serverMomentum: 0.9),
                                          StrategySpec(kind: .fedadam, serverLearningRate: 0.01, beta1: 0.9, beta2: 0.99, tau: 0.001),
                                          StrategySpec(kind: .fedmedian), StrategySpec(kind: .fedtrimmedavg, trim: 0.2)]
        return strategies.enumerated().map { i, strategy in
            var e = Experiment(name: "seed-\(strategy.kind.rawValue)", model: model, partition: partitions[i % partitions.count], clients: 10,
                               fraction: 0.5, localEpochs: 2, localBatch: i % 2 == 0 ? 10 : nil, learningRate: 0.1, rounds: 3, seed: UInt64(i),
                               strategy: strategy)
            e.targetAccuracy = 0.9
            if i == 4 { e.adversaries = AdversarySpec(fraction: 0.2, kind: .scale, scale: -5) }
            if i == 5 { e.adversaries = AdversarySpec(fraction: 0.1, kind: .random, noise: 1) }
            return e
        }
    }
}
