/// The training step timed against the BLAS it runs on: each `measure` times training steps, the same
/// products run alone, and a 1024³ product back to back, so their ratios hold on a noisy machine.
public final class StepBenchmark {
    /// One measurement: samples/s of the step, and GFLOP/s of the step, of its products alone, and of 1024³.
    public struct Figures: Sendable {
        public var samplesPerSecond: Double
        public var stepGflops: Double
        public var sameShapeGflops: Double
        public var squareGflops: Double
    }

    public let batch: Int
    public let products: SameShapeProducts
    private let trainer: Trainer
    private let source: BatchSource
    private let buffer: BatchBuffer
    private let square = SquareProduct(size: 1024)
    private var order: [Int]
    private var cursor = 0

    public init(spec: ModelSpec, optimizer: OptimizerSettings, batch: Int, source: BatchSource) {
        let network = Network(spec: spec, seed: 1)
        trainer = Trainer(network: network, optimizer: optimizer, schedule: LearningRateSchedule(base: 1e-4), seed: 1)
        buffer = BatchBuffer(capacity: batch, inputWidth: spec.inputWidth)
        products = SameShapeProducts(shapes: denseShapes(network.body), batch: batch)
        self.batch = batch
        self.source = source
        order = Array(0..<source.sampleCount)
        var rng = SeededRandom(seed: 7)
        rng.shuffle(&order)
    }

    /// Matrix products in one step.
    public var productCount: Int { products.shapes.count * 3 - 1 }

    private func trainSteps(_ n: Int) throws {
        for _ in 0..<n {
            if cursor + batch > order.count { cursor = 0 }
            let indices = order[cursor..<(cursor + batch)]
            cursor += batch
            source.gather(indices, into: buffer.x.base, labels: buffer.labels)
            _ = try trainer.trainStep(x: buffer.x.base, labels: buffer.labels, batch: batch, stepsPerEpoch: 1000, totalSteps: 1_000_000)
        }
    }

    public func warmUp() throws {
        try trainSteps(200)
        products.run(10)
        square.run(1)
    }

    /// Each of the three timed for about `seconds`.
    public func measure(seconds: Double) throws -> Figures {
        let stepTime = try timePerCall(seconds) { try trainSteps(10) } / 10
        let shapeTime = timePerCall(seconds) { products.run(10) } / 10
        let squareTime = timePerCall(seconds) { square.run(1) }
        return Figures(samplesPerSecond: Double(batch) / stepTime, stepGflops: products.flops / stepTime / 1e9,
                       sameShapeGflops: products.flops / shapeTime / 1e9, squareGflops: square.flops / squareTime / 1e9)
    }
}
