import CPNG
import Foundation
import NNCluster
import NNCore
import NNData
import NNProtocol

/// The starting corpora of the fuzz targets, made from the code's own types so that they follow every change:
/// each seed decodes and validates (a test checks it), and the fuzzer mutates from there.
public enum FuzzSeeds {
    public enum Target: String, CaseIterable, Sendable { case codec, checkpoint, experiment, request }

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
        case .request:
            // Bodies for a model of 4 inputs: JSON in both scales, and a small digit as PGM and as PNG.
            var ell = [UInt8](repeating: 255, count: 12 * 10)
            for y in 2..<10 { ell[y * 10 + 3] = 0 }
            for x in 3..<8 { ell[9 * 10 + x] = 0 }
            return [
                ("json-unit", Array(#"{"instances": [[0, 0.25, 1e-1, 1], [0.5, 0.5, 0.5, 0.5]]}"#.utf8)),
                ("json-bytes", Array(#"{"instances":[[0,128,255,17]]}"#.utf8)),
                ("pgm", Array("P5\n10 12\n255\n".utf8) + ell),
                ("png-gray", try png(ell, width: 10, height: 12, format: UInt32(PNG_FORMAT_GRAY))),
                ("png-rgba", try png(ell.flatMap { [$0, $0, 0, 255 - $0] }, width: 10, height: 12, format: UInt32(PNG_FORMAT_FLAG_COLOR | PNG_FORMAT_FLAG_ALPHA))),
            ]
        }
    }

    /// `pixels` (8-bit, in libpng's simplified `format`) as PNG bytes, written by libpng.
    public static func png(_ pixels: [UInt8], width: Int, height: Int, format: UInt32) throws -> [UInt8] {
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        image.width = UInt32(width)
        image.height = UInt32(height)
        image.format = format
        var size = 0
        guard pixels.withUnsafeBytes({ png_image_write_to_memory(&image, nil, &size, 0, $0.baseAddress, 0, nil) }) != 0 else {
            throw DataError("libpng cannot size a \(width)×\(height) PNG")
        }
        var out = [UInt8](repeating: 0, count: size)
        guard out.withUnsafeMutableBytes({ o in pixels.withUnsafeBytes { png_image_write_to_memory(&image, o.baseAddress, &size, 0, $0.baseAddress, 0, nil) } }) != 0 else {
            throw DataError("libpng cannot write a \(width)×\(height) PNG")
        }
        return Array(out.prefix(size))
    }

    /// Small models with every kind of layer.
    static var checkpointModels: [ModelSpec] {
        [try! ModelSpec(widths: [4, 3]), try! ModelSpec(widths: [4, 5, 3], activation: .tanh, batchNorm: true),
         try! ModelSpec(widths: [4, 6, 3], dropout: 0.2, residualBlocks: 1, loss: .binaryCrossEntropy)]
    }

    /// Experiments with every partition, strategy and adversary kind, and host aggregation.
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
            if i == 3 { e.hostAggregation = true }
            if i == 4 { e.adversaries = AdversarySpec(fraction: 0.2, kind: .scale, scale: -5) }
            if i == 5 { e.adversaries = AdversarySpec(fraction: 0.1, kind: .random, noise: 1) }
            return e
        }
    }
}
