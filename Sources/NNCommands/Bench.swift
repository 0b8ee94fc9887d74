import ArgumentParser
import Foundation
import NNCluster
import NNCore
import NNData

/// Measures the training step against the BLAS it runs on. All figures come from one run, interleaved, so
/// the ratios hold on a noisy machine even when the absolute numbers move.
public struct Bench: AsyncParsableCommand {
    public init() {}
    public static let configuration = CommandConfiguration(
        abstract: "Training throughput and effective GFLOP/s against cblas_sgemm on the same shapes and on 1024³.")

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: "Optimizer: sgd, momentum, nesterov, adam, adamw.")
    var optimizer: OptimizerSettings.Kind = .adam

    @Option(help: "Mini-batch size.")
    var batch: Int = 64

    @Option(help: "Measurement rounds; each times the step, the same-shape products and 1024³ once (default 5; with --federated, federated rounds, default 20).")
    var rounds: Int?

    @Option(help: "Seconds per measurement.")
    var seconds: Double = 0.5

    @Flag(help: "Measure synchronous SGD over ZeroMQ on loopback instead, with 1 and 2 worker processes at batch 64 and 256 per worker (--batch, --rounds and --seconds do not apply).")
    var distributed = false

    @Flag(help: "Measure federated rounds instead: simulation with 1 and 2 client threads, and 2 worker processes over ZeroMQ.")
    var federated = false

    @Option(help: ArgumentHelp("With --federated: the experiment (default: FedAvg on the MNIST 2NN, K = 100, C = 0.1, E = 1, B = 10).", valueName: "file"))
    var config: String?

    @OptionGroup var dataOptions: DataOptions
    @OptionGroup var global: GlobalOptions

    public func validate() throws {
        guard rounds.map({ $0 >= 1 }) ?? true else { throw ValidationError("--rounds must be at least 1") }
        guard !(federated && distributed) else { throw ValidationError("give --federated or --distributed, not both") }
        guard config == nil || federated else { throw ValidationError("--config goes with --federated") }
    }

    /// The FedAvg paper's MNIST 2NN cell: K = 100, C = 0.1, E = 1, B = 10, IID.
    static func paperCell() throws -> Experiment {
        var experiment = Experiment(name: "mnist-2nn-iid", model: try ModelSpec(widths: [784, 200, 200, 10]), partition: .iid, clients: 100,
                                    fraction: 0.1, localEpochs: 1, localBatch: 10, learningRate: 0.2, rounds: 1)
        experiment.targetAccuracy = 0.97
        return experiment
    }

    public func run() async throws {
        let logger = try global.start("nn.bench")
        if federated {
            let experiment = try config.map { try Experiment.load($0) } ?? Self.paperCell()
            try FederatedBench(experiment: experiment, rounds: rounds ?? 20, dataOptions: try dataOptions.fixing(experiment), logger: logger).run()
            return
        }
        let rounds = self.rounds ?? 5
        let spec = try modelOptions.spec()
        if distributed {
            try DistributedBench(spec: spec, optimizer: optimizer, dataOptions: dataOptions, logger: logger).run()
            return
        }
        let data = syntheticData(spec: spec)
        let network = Network(spec: spec, seed: 1)
        let trainer = Trainer(network: network, optimizer: OptimizerSettings(kind: optimizer),
                              schedule: LearningRateSchedule(base: 1e-4), seed: 1)
        let buffer = BatchBuffer(capacity: batch, inputWidth: spec.inputWidth)
        let shapes = denseShapes(network.body)
        let products = SameShapeProducts(shapes: shapes, batch: batch)
        let stepFlops = products.flops

        var order = Array(0..<data.sampleCount)
        var cursor = 0
        func trainSteps(_ n: Int) throws {
            for _ in 0..<n {
                if cursor + batch > order.count { cursor = 0 }
                let indices = order[cursor..<(cursor + batch)]
                cursor += batch
                data.gather(indices, into: buffer.x.base, labels: buffer.labels)
                _ = try trainer.trainStep(x: buffer.x.base, labels: buffer.labels, batch: batch, stepsPerEpoch: 1000, totalSteps: 1_000_000)
            }
        }
        var rng = SeededRandom(seed: 7)
        rng.shuffle(&order)

        let big = SquareProduct(size: 1024)
        try trainSteps(200)
        products.run(10)
        big.run(1)

        print("nn bench: \(spec.description), batch \(batch), \(optimizer.rawValue), OpenBLAS threads \(global.threads)")
        print(String(format: "matrix work per step: %.2f MFLOP (%d products)\n", stepFlops / 1e6, shapes.count * 3 - 1))
        print("round  samples/s   step GFLOP/s   same-shape sgemm GFLOP/s   1024³ sgemm GFLOP/s   step/1024³")
        var ratios: [Double] = [], stepRates: [Double] = [], sampleRates: [Double] = [], shapeRates: [Double] = [], bigRates: [Double] = []
        for round in 1...rounds {
            let stepTime = try timePerCall(seconds) { try trainSteps(10) } / 10
            let shapeTime = timePerCall(seconds) { products.run(10) } / 10
            let bigTime = timePerCall(seconds) { big.run(1) }
            let stepGflops = stepFlops / stepTime / 1e9
            let shapeGflops = products.flops / shapeTime / 1e9
            let bigGflops = big.flops / bigTime / 1e9
            sampleRates.append(Double(batch) / stepTime); stepRates.append(stepGflops)
            shapeRates.append(shapeGflops); bigRates.append(bigGflops); ratios.append(stepGflops / bigGflops)
            print(String(format: "%5d  %9.0f   %12.1f   %24.1f   %19.1f   %9.1f%%", round, Double(batch) / stepTime, stepGflops, shapeGflops, bigGflops, 100 * stepGflops / bigGflops))
        }
        print(String(format: "median %9.0f   %12.1f   %24.1f   %19.1f   %9.1f%%", median(sampleRates), median(stepRates), median(shapeRates), median(bigRates), 100 * median(ratios)))
        print(String(format: "\ntraining step: %.1f%% of the same-shape sgemm rate; an epoch of 60,000 samples takes %.2fs",
                     100 * median(stepRates) / median(shapeRates), 60_000 / median(sampleRates)))
        print("peak resident memory: \(peakResidentBytes() >> 20) MiB")
    }

    /// Random images of the model's input width (their shape does not matter to the step).
    private func syntheticData(spec: ModelSpec) -> Dataset {
        var rng = SeededRandom(seed: 3)
        let count = 60_000
        let images = (0..<(count * spec.inputWidth)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let labels = (0..<count).map { _ in UInt8(rng.next(below: spec.classes)) }
        return Dataset(name: "synthetic", images: images, labels: labels, rows: 1, columns: spec.inputWidth, classes: spec.classes)
    }
}

/// Input and output widths of every dense layer, in forward order.
func denseShapes(_ layer: Layer) -> [(in: Int, out: Int)] {
    switch layer {
    case let dense as Dense: return [(dense.inputWidth, dense.outputWidth)]
    case let sequence as Sequential: return sequence.layers.flatMap(denseShapes)
    case let residual as Residual: return denseShapes(residual.body)
    default: return []
    }
}

/// Seconds per call of `body`, called repeatedly for about `budget` seconds.
func timePerCall(_ budget: Double, _ body: () throws -> Void) rethrows -> Double {
    let start = ContinuousClock.now
    var calls = 0
    repeat {
        try body()
        calls += 1
    } while start.duration(to: .now).seconds < budget
    return start.duration(to: .now).seconds / Double(calls)
}

func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

/// The products of one training step, run on their own: forward, weight gradient and (all but the first
/// layer) input gradient of each dense layer. `flops` counts 2·m·n·k for each: the step's matrix work.
final class SameShapeProducts {
    let shapes: [(in: Int, out: Int)]
    let batch: Int
    let flops: Double
    private let x: FloatBuffer, w: FloatBuffer, y: FloatBuffer

    init(shapes: [(in: Int, out: Int)], batch: Int) {
        self.shapes = shapes
        self.batch = batch
        let widest = shapes.map { max($0.in, $0.out) }.max()!
        x = FloatBuffer(count: batch * widest); y = FloatBuffer(count: batch * widest)
        w = FloatBuffer(count: shapes.map { $0.in * $0.out }.max()!)
        for b in [x, w, y] { for i in 0..<b.count { b[i] = Float(i % 7) * 0.01 } }
        flops = shapes.enumerated().reduce(0) { $0 + Double(2 * batch * $1.element.in * $1.element.out) * ($1.offset == 0 ? 2 : 3) }
    }

    func run(_ times: Int) {
        for _ in 0..<times {
            for (i, s) in shapes.enumerated() {
                BLAS.gemm(transB: true, m: batch, n: s.out, k: s.in, a: x.base, b: w.base, c: y.base)
                BLAS.gemm(transA: true, m: s.out, n: s.in, k: batch, a: y.base, b: x.base, c: w.base)
                if i > 0 { BLAS.gemm(m: batch, n: s.in, k: s.out, a: y.base, b: w.base, c: x.base) }
            }
        }
    }
}

/// An n×n×n product, the reference rate of this machine's sgemm.
final class SquareProduct {
    let size: Int
    var flops: Double { 2 * pow(Double(size), 3) }
    private let a: FloatBuffer, b: FloatBuffer, c: FloatBuffer

    init(size: Int) {
        self.size = size
        a = FloatBuffer(count: size * size); b = FloatBuffer(count: size * size); c = FloatBuffer(count: size * size)
        for i in 0..<(size * size) { a[i] = Float(i % 13) * 0.01; b[i] = Float(i % 11) * 0.01 }
    }

    func run(_ times: Int) {
        for _ in 0..<times { BLAS.gemm(m: size, n: size, k: size, a: a.base, b: b.base, c: c.base) }
    }
}
