import NNCore
import Testing

/// Analytic gradients against central finite differences of the loss, for every layer kind, activation and loss.
@Suite struct GradientCheckTests {
    /// Relative error ‖analytic − numeric‖ / max(‖analytic‖, ‖numeric‖) over every parameter.
    /// ReLU gets a smaller step, so that few pre-activations cross its kink between the two evaluations.
    func gradientError(_ spec: ModelSpec, batch: Int = 5, seed: UInt64 = 3) -> Double {
        let epsilon: Float = spec.activation == .relu ? 1e-3 : 1e-2
        let network = Network(spec: spec, seed: seed)
        var rng = SeededRandom(seed: seed &+ 100)
        let x = FloatBuffer((0..<(batch * spec.inputWidth)).map { _ in rng.nextGaussian() })
        var labelValues = (0..<batch).map { _ in Int32(rng.next(below: spec.classes)) }
        let pass = Pass.training(seed: 11, step: 4)
        let dLogits = FloatBuffer(count: batch * spec.classes)

        func loss(gradient: UnsafeMutablePointer<Float>?) -> Double {
            labelValues.withUnsafeMutableBufferPointer { labels in
                let logits = network.forward(x.base, batch: batch, pass: pass)
                return spec.loss.evaluate(logits: logits, labels: labels.baseAddress!, batch: batch, classes: spec.classes, gradient: gradient)
            }
        }
        _ = loss(gradient: dLogits.base)
        network.backward(dLogits.base, batch: batch)
        let analytic = network.gradients.array

        var numeric = [Double](repeating: 0, count: network.parameterCount)
        for i in 0..<network.parameterCount {
            let saved = network.parameters[i]
            network.parameters[i] = saved + epsilon
            let up = loss(gradient: nil)
            network.parameters[i] = saved - epsilon
            let down = loss(gradient: nil)
            network.parameters[i] = saved
            numeric[i] = (up - down) / (2 * Double(epsilon))
        }
        var difference = 0.0, normA = 0.0, normN = 0.0
        for i in analytic.indices {
            difference += (Double(analytic[i]) - numeric[i]) * (Double(analytic[i]) - numeric[i])
            normA += Double(analytic[i]) * Double(analytic[i])
            normN += numeric[i] * numeric[i]
        }
        #expect(normA > 0, "the gradient should not vanish")
        return (difference / max(normA, normN)).squareRoot()
    }

    @Test(arguments: Activation.Kind.allCases, Loss.allCases)
    func denseNetwork(activation: Activation.Kind, loss: Loss) throws {
        let spec = try ModelSpec(widths: [6, 5, 4, 3], activation: activation, loss: loss)
        #expect(gradientError(spec) < 5e-3)
    }

    @Test(arguments: Activation.Kind.allCases)
    func batchNorm(activation: Activation.Kind) throws {
        let spec = try ModelSpec(widths: [6, 5, 4, 3], activation: activation, batchNorm: true)
        #expect(gradientError(spec, batch: 6) < 5e-3)
    }

    @Test func residualBlocks() throws {
        let spec = try ModelSpec(widths: [6, 5, 3], activation: .tanh, residualBlocks: 2)
        #expect(gradientError(spec) < 5e-3)
    }

    @Test func residualBlocksWithBatchNorm() throws {
        let spec = try ModelSpec(widths: [6, 5, 3], activation: .sigmoid, batchNorm: true, residualBlocks: 1)
        #expect(gradientError(spec, batch: 6) < 5e-3)
    }

    @Test func dropout() throws {
        let spec = try ModelSpec(widths: [6, 8, 8, 3], activation: .tanh, dropout: 0.3)
        #expect(gradientError(spec) < 5e-3)
    }

    /// A backward pass with a descent rate takes the plain SGD step on the gradient a plain backward pass gives,
    /// in every layer kind (dense weights fold it into their product, so to rounding), and returns the same input
    /// gradient, that of the parameters before the step.
    @Test(arguments: [(false, 0), (true, 1)])
    func descentIsTheSGDStep(batchNorm: Bool, residualBlocks: Int) throws {
        let spec = try ModelSpec(widths: [6, 8, 8, 3], activation: .relu, batchNorm: batchNorm, dropout: 0.2, residualBlocks: residualBlocks)
        let batch = 5, rate: Float = 0.05
        var rng = SeededRandom(seed: 21)
        let x = FloatBuffer((0..<(batch * spec.inputWidth)).map { _ in rng.nextGaussian() })
        var labels = (0..<batch).map { _ in Int32(rng.next(below: spec.classes)) }
        let stepped = Network(spec: spec, seed: 5), descended = Network(spec: spec, seed: 5)
        let sgd = Optimizer(OptimizerSettings(kind: .sgd), parameterCount: stepped.parameterCount)
        for step in UInt64(0)..<3 {
            let a = labels.withUnsafeMutableBufferPointer { Backpropagation(network: stepped, seed: 9).run(x: x.base, labels: $0.baseAddress!, batch: batch, step: step) }
            sgd.step(parameters: stepped.parameters, gradients: stepped.gradients, learningRate: rate)
            let b = labels.withUnsafeMutableBufferPointer {
                Backpropagation(network: descended, seed: 9).run(x: x.base, labels: $0.baseAddress!, batch: batch, step: step, descent: rate)
            }
            #expect(abs(a.loss - b.loss) < 1e-5 * abs(a.loss) && a.correct == b.correct)
        }
        let p = stepped.parameters.array, q = descended.parameters.array
        let difference = zip(p, q).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +).squareRoot() / p.map { Double($0) * Double($0) }.reduce(0, +).squareRoot()
        #expect(difference < 1e-6, "relative difference \(difference)")
        #expect(p != Network(spec: spec, seed: 5).parameters.array, "no step was taken")
    }

    /// A check that cannot pass by accident: a corrupted gradient must be caught.
    @Test func checkDetectsAWrongGradient() throws {
        let spec = try ModelSpec(widths: [4, 3, 2], activation: .tanh)
        let network = Network(spec: spec, seed: 1)
        let x = FloatBuffer([0.1, -0.2, 0.3, 0.4, 0.5, -0.6, 0.7, 0.8])
        var labels: [Int32] = [0, 1]
        let d = FloatBuffer(count: 4)
        labels.withUnsafeMutableBufferPointer { l in
            let logits = network.forward(x.base, batch: 2, pass: .inference)
            _ = spec.loss.evaluate(logits: logits, labels: l.baseAddress!, batch: 2, classes: 2, gradient: d.base)
        }
        // Doubling the logit gradient doubles every parameter gradient: the relative error is then 0.5.
        network.backward(d.base, batch: 2)
        let right = network.gradients.array
        for i in 0..<4 { d[i] *= 2 }
        network.backward(d.base, batch: 2)
        let wrong = network.gradients.array
        let error = zip(right, wrong).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +).squareRoot()
            / wrong.map { Double($0) * Double($0) }.reduce(0, +).squareRoot()
        #expect(abs(error - 0.5) < 1e-6)
    }
}
