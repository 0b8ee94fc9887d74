import Foundation
import NNCore
import Testing

@Suite struct ModelTests {
    @Test func parsesWidths() throws {
        #expect(try ModelSpec.widths(parsing: "784-128-10") == [784, 128, 10])
        for bad in ["784", "784-", "784--10", "784-x-10", "0-10", "784-128-10a", "", "784-99999999-10"] {
            #expect(throws: ModelSpecError.self, "\(bad)") { try ModelSpec.widths(parsing: bad) }
        }
        #expect(throws: ModelSpecError.self) { try ModelSpec(widths: [784, 10], residualBlocks: 1) }
        #expect(throws: ModelSpecError.self) { try ModelSpec(widths: [784, 1]) }
        #expect(throws: ModelSpecError.self) { try ModelSpec(widths: [784, 10], dropout: 1) }
    }

    /// The flat layout is the order of the layers, each weight `[out × in]` followed by its bias.
    @Test func flatLayout() throws {
        let network = Network(spec: try ModelSpec(widths: [4, 3, 2], batchNorm: true, residualBlocks: 1))
        let names = network.parameterLayout.map(\.tensor.name)
        #expect(names == ["0.weight", "0.bias", "1.weight", "1.bias", "3.body.0.weight", "3.body.0.bias", "3.body.1.weight",
                          "3.body.1.bias", "3.body.3.weight", "3.body.3.bias", "4.weight", "4.bias"])
        #expect(network.parameterLayout.map(\.tensor.shape)[0] == [3, 4])
        #expect(network.parameterCount == 12 + 3 + 6 + 9 + 3 + 6 + 9 + 3 + 6 + 2)
        #expect(network.stateLayout.map(\.tensor.name) == ["1.running_mean", "1.running_var", "3.body.1.running_mean", "3.body.1.running_var"])
        var offset = 0
        for slot in network.parameterLayout {
            #expect(slot.offset == offset)
            offset += slot.tensor.count
        }
    }

    @Test func randomIsStable() {
        var a = SeededRandom(seed: 42), b = SeededRandom(seed: 42), c = SeededRandom(seed: 43)
        let first = (0..<4).map { _ in a.next() }
        #expect(first == (0..<4).map { _ in b.next() })
        #expect(first != (0..<4).map { _ in c.next() })
        // Golden values: a change to the generator changes every seeded result, so it must be deliberate.
        var golden = SeededRandom(seed: 1)
        #expect(golden.next() == 0xB3F2_AF6D_0FC7_10C5)
        var order = Array(0..<100)
        var rng = SeededRandom(seed: 9)
        rng.shuffle(&order)
        #expect(order.sorted() == Array(0..<100) && order != Array(0..<100))
        for bound in [1, 2, 3, 10, 1000] { #expect((0..<200).allSatisfy { _ in (0..<bound).contains(rng.next(below: bound)) }) }
    }

    @Test func crossEntropyIsStableForHugeLogits() {
        var labels: [Int32] = [0, 1]
        let logits: [Float] = [1000, -1000, 0, 1000, -1000, 0]
        let gradient = FloatBuffer(count: 6)
        let loss = labels.withUnsafeMutableBufferPointer { l in
            logits.withUnsafeBufferPointer { Loss.crossEntropy.evaluate(logits: $0.baseAddress!, labels: l.baseAddress!, batch: 2, classes: 3, gradient: gradient.base) }
        }
        #expect(abs(loss - 1000) < 1e-3)  // sample 0 is right (loss 0), sample 1 is off by 2000: mean 1000
        #expect(gradient.array.allSatisfy { $0.isFinite })
        #expect(abs(Loss.crossEntropy.probabilities([1000, -1000, 0])[0] - 1) < 1e-6)
    }

    @Test func confusionMatrixMetrics() {
        var m = ConfusionMatrix(classes: 3)
        for (t, p) in [(0, 0), (0, 0), (0, 1), (1, 1), (1, 1), (1, 1), (2, 0), (2, 2)] { m.add(truth: t, predicted: p) }
        #expect(m.total == 8 && m.correct == 6 && m.accuracy == 0.75)
        #expect(m.precision(0) == 2.0 / 3 && m.recall(0) == 2.0 / 3)
        #expect(m.precision(1) == 0.75 && m.recall(1) == 1)
        #expect(m.precision(2) == 1 && m.recall(2) == 0.5)
        #expect(abs(m.f1(1) - 2 * 0.75 / 1.75) < 1e-12)
        #expect(m.report().contains("macro avg"))
    }

    /// A small problem a working trainer must solve: four Gaussian blobs.
    func blobs(count: Int, seed: UInt64) -> (x: [Float], labels: [Int32]) {
        var rng = SeededRandom(seed: seed)
        var x: [Float] = [], labels: [Int32] = []
        for _ in 0..<count {
            let c = rng.next(below: 4)
            labels.append(Int32(c))
            x += [Float(c % 2) * 2 - 1 + 0.3 * rng.nextGaussian(), Float(c / 2) * 2 - 1 + 0.3 * rng.nextGaussian()]
        }
        return (x, labels)
    }

    struct Blobs: BatchSource {
        let x: [Float], labels: [Int32]
        var sampleCount: Int { labels.count }
        var inputWidth: Int { 2 }
        func gather(_ indices: ArraySlice<Int>, into out: UnsafeMutablePointer<Float>, labels l: UnsafeMutablePointer<Int32>) {
            for (row, i) in indices.enumerated() { out[2 * row] = x[2 * i]; out[2 * row + 1] = x[2 * i + 1]; l[row] = labels[i] }
        }
    }

    func train(_ spec: ModelSpec, optimizer: OptimizerSettings, seed: UInt64, epochs: Int = 5) throws -> (Network, Evaluation) {
        let data = blobs(count: 512, seed: 1)
        let source = Blobs(x: data.x, labels: data.labels)
        let network = Network(spec: spec, seed: seed)
        let trainer = Trainer(network: network, optimizer: optimizer, schedule: LearningRateSchedule(base: 0.01), seed: seed)
        let buffer = BatchBuffer(capacity: 16, inputWidth: 2)
        for epoch in 0..<epochs {
            var order = Array(0..<source.sampleCount)
            var rng = SeededRandom(seed: seed, stream: UInt64(epoch))
            rng.shuffle(&order)
            _ = try trainer.trainEpoch(source, order: order, batchSize: 16, buffer: buffer, epochs: epochs)
        }
        return (network, network.evaluate(Blobs(x: blobs(count: 400, seed: 2).x, labels: blobs(count: 400, seed: 2).labels)))
    }

    @Test(arguments: OptimizerSettings.Kind.allCases)
    func learnsBlobs(kind: OptimizerSettings.Kind) throws {
        let spec = try ModelSpec(widths: [2, 16, 4], batchNorm: true, dropout: 0.1)
        let untrained = Network(spec: spec, seed: 4).evaluate(Blobs(x: blobs(count: 400, seed: 2).x, labels: blobs(count: 400, seed: 2).labels))
        let (_, evaluation) = try train(spec, optimizer: OptimizerSettings(kind: kind, weightDecay: 1e-4), seed: 4)
        #expect(evaluation.accuracy > 0.95)
        #expect(evaluation.loss < untrained.loss / 2)
    }

    @Test func sameSeedSameBitsOtherSeedOtherBits() throws {
        let spec = try ModelSpec(widths: [2, 8, 8, 4], batchNorm: true, dropout: 0.2)
        let (a, _) = try train(spec, optimizer: OptimizerSettings(kind: .adam), seed: 7, epochs: 2)
        let (b, _) = try train(spec, optimizer: OptimizerSettings(kind: .adam), seed: 7, epochs: 2)
        let (c, _) = try train(spec, optimizer: OptimizerSettings(kind: .adam), seed: 8, epochs: 2)
        #expect(a.parameters.array.map(\.bitPattern) == b.parameters.array.map(\.bitPattern))
        #expect(a.state.array.map(\.bitPattern) == b.state.array.map(\.bitPattern))
        #expect(a.parameters.array != c.parameters.array)
    }

    @Test func divergenceIsAnError() throws {
        let network = Network(spec: try ModelSpec(widths: [2, 4]), seed: 1)
        let trainer = Trainer(network: network, optimizer: OptimizerSettings(kind: .sgd), schedule: LearningRateSchedule(base: 0.1), seed: 1)
        let x = FloatBuffer([Float.nan, 1])
        var labels: [Int32] = [1]
        #expect(throws: TrainingError.self) {
            try labels.withUnsafeMutableBufferPointer { try trainer.trainStep(x: x.base, labels: $0.baseAddress!, batch: 1, stepsPerEpoch: 1, totalSteps: 1) }
        }
        #expect(trainer.step == 0)
    }
}
