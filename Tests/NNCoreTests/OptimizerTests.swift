import Foundation
import NNCore
import Testing

/// The optimizers against a double-precision transcription of PyTorch's update rules.
@Suite struct OptimizerTests {
    struct Reference {
        var p: [Double], m: [Double], v: [Double]
        var t = 0

        mutating func step(_ g: [Double], _ s: OptimizerSettings, lr: Double) {
            t += 1
            let wd = Double(s.weightDecay), mu = Double(s.momentum), b1 = Double(s.beta1), b2 = Double(s.beta2)
            for i in p.indices {
                switch s.kind {
                case .sgd:
                    p[i] -= lr * (g[i] + wd * p[i])
                case .momentum, .nesterov:
                    let d = g[i] + wd * p[i]
                    m[i] = mu * m[i] + d
                    p[i] -= lr * (s.kind == .nesterov ? d + mu * m[i] : m[i])
                case .adam, .adamw:
                    if s.kind == .adamw { p[i] *= 1 - lr * wd }
                    let d = g[i] + (s.kind == .adam ? wd * p[i] : 0)
                    m[i] = b1 * m[i] + (1 - b1) * d
                    v[i] = b2 * v[i] + (1 - b2) * d * d
                    let mHat = m[i] / (1 - pow(b1, Double(t))), vHat = v[i] / (1 - pow(b2, Double(t)))
                    p[i] -= lr * mHat / (vHat.squareRoot() + Double(s.epsilon))
                }
            }
        }
    }

    @Test(arguments: OptimizerSettings.Kind.allCases, [Float(0), 0.01])
    func matchesReference(kind: OptimizerSettings.Kind, weightDecay: Float) {
        let n = 37  // not a multiple of the vector width, so the scalar tail runs too
        var rng = SeededRandom(seed: 5)
        let start = (0..<n).map { _ in rng.nextGaussian() }
        let settings = OptimizerSettings(kind: kind, weightDecay: weightDecay)
        let optimizer = Optimizer(settings, parameterCount: n)
        let parameters = FloatBuffer(start)
        var reference = Reference(p: start.map(Double.init), m: Array(repeating: 0, count: n), v: Array(repeating: 0, count: n))
        for _ in 0..<20 {
            let g = (0..<n).map { _ in rng.nextGaussian() }
            optimizer.step(parameters: parameters, gradients: FloatBuffer(g), learningRate: 0.01)
            reference.step(g.map(Double.init), settings, lr: 0.01)
        }
        for i in 0..<n {
            #expect(abs(Double(parameters[i]) - reference.p[i]) < 1e-5 * max(1, abs(reference.p[i])), "parameter \(i)")
        }
        #expect(zip(parameters.array, start).contains { $0 != $1 })
    }

    /// A moment that decays while its parameter gets no gradient is stored as zero once it would be subnormal
    /// (arithmetic on subnormals is slow), and the parameters still follow the reference.
    @Test(arguments: [OptimizerSettings.Kind.momentum, .nesterov, .adam, .adamw])
    func decayedMomentsBecomeZero(kind: OptimizerSettings.Kind) {
        let n = 37
        var rng = SeededRandom(seed: 6)
        let start = (0..<n).map { _ in rng.nextGaussian() }
        let settings = OptimizerSettings(kind: kind)
        let optimizer = Optimizer(settings, parameterCount: n)
        let parameters = FloatBuffer(start)
        var reference = Reference(p: start.map(Double.init), m: Array(repeating: 0, count: n), v: Array(repeating: 0, count: n))
        var subnormal = 0
        // 0.9¹⁰⁰⁰ of a gradient near 1 passes through the whole subnormal range.
        for step in 0..<1000 {
            let g = step < 3 ? (0..<n).map { _ in rng.nextGaussian() } : Array(repeating: Float(0), count: n)
            optimizer.step(parameters: parameters, gradients: FloatBuffer(g), learningRate: 0.01)
            reference.step(g.map(Double.init), settings, lr: 0.01)
            var state = RunState()
            optimizer.save(into: &state, as: "o")
            subnormal += state.vectors.values.joined().filter { $0 != 0 && abs($0) < .leastNormalMagnitude }.count
        }
        #expect(subnormal == 0)
        for i in 0..<n {
            #expect(abs(Double(parameters[i]) - reference.p[i]) < 1e-5 * max(1, abs(reference.p[i])), "parameter \(i)")
        }
    }

    @Test func schedules() {
        let constant = LearningRateSchedule(base: 0.1)
        #expect(constant.rate(step: 999, stepsPerEpoch: 10, totalSteps: 1000) == 0.1)

        let step = LearningRateSchedule(base: 0.1, kind: .step, stepEpochs: 2, gamma: 0.5)
        #expect(step.rate(step: 19, stepsPerEpoch: 10, totalSteps: 100) == 0.1)
        #expect(step.rate(step: 20, stepsPerEpoch: 10, totalSteps: 100) == 0.05)
        #expect(step.rate(step: 45, stepsPerEpoch: 10, totalSteps: 100) == 0.025)

        let cosine = LearningRateSchedule(base: 1, kind: .cosine, minimum: 0.1, warmupSteps: 10)
        #expect(cosine.rate(step: 0, stepsPerEpoch: 10, totalSteps: 110) == 0.1)
        #expect(cosine.rate(step: 9, stepsPerEpoch: 10, totalSteps: 110) == 1)
        #expect(cosine.rate(step: 10, stepsPerEpoch: 10, totalSteps: 110) == 1)
        #expect(abs(cosine.rate(step: 60, stepsPerEpoch: 10, totalSteps: 110) - 0.55) < 1e-6)
        #expect(abs(cosine.rate(step: 110, stepsPerEpoch: 10, totalSteps: 110) - 0.1) < 1e-6)
    }

    @Test func clippingBoundsTheGlobalNorm() throws {
        let spec = try ModelSpec(widths: [3, 2])
        let network = Network(spec: spec)
        let update = ParameterUpdate(network: network, optimizer: OptimizerSettings(kind: .sgd), schedule: LearningRateSchedule(base: 1), clipNorm: 0.5)
        for i in 0..<network.parameterCount { network.gradients[i] = 3 }
        update.apply(stepsPerEpoch: 1, totalSteps: 1)
        let moved = network.parameters.array.map { Double($0) * Double($0) }.reduce(0, +).squareRoot()
        #expect(abs(moved - 0.5) < 1e-6)
    }
}

@Suite struct VectorCheckTests {
    /// The ring's weighing and summing kernels give the bits of the scalar loops they replace, signed zeros and
    /// subnormals included, on lengths that fill no vector register evenly.
    @Test func scaleAndAddMatchTheScalarLoops() {
        var generator = SystemRandomNumberGenerator()
        for count in [0, 1, 15, 1_001] {
            var x = (0..<count).map { _ in Float.random(in: -1...1, using: &generator) }
            var y = (0..<count).map { _ in Float.random(in: -1...1, using: &generator) }
            if count > 2 { x[0] = -0.0; x[1] = 1e-40; y[0] = 0; y[1] = -1e-40 }
            let weight: Float = 0.3
            var scaled = [Float](repeating: .nan, count: count), summed = y
            x.withUnsafeBufferPointer { xs in
                scaled.withUnsafeMutableBufferPointer { if count > 0 { BLAS.scale(xs.baseAddress!, by: weight, into: $0.baseAddress!, count: count) } }
                summed.withUnsafeMutableBufferPointer { if count > 0 { BLAS.add(xs.baseAddress!, into: $0.baseAddress!, count: count) } }
            }
            #expect(scaled.map(\.bitPattern) == x.map { (weight * $0).bitPattern })
            #expect(summed.map(\.bitPattern) == zip(y, x).map { ($0 + $1).bitPattern })
        }
    }

    /// A dense layer's forward product in blocks of output columns gives, within rounding, what the whole product
    /// and a double-precision loop give, for blocks of every width the rule may pick (the shapes of a batch of a
    /// few rows) and with β = 1 (the bias already in place).
    @Test func forwardProductInBlocksMatchesTheWholeProduct() {
        var generator = SystemRandomNumberGenerator()
        for (m, n, k) in [(10, 200, 784), (7, 130, 40), (24, 200, 200), (1, 10, 784)] {
            let a = (0..<(m * k)).map { _ in Float.random(in: -1...1, using: &generator) }
            let b = (0..<(n * k)).map { _ in Float.random(in: -1...1, using: &generator) }
            let bias = (0..<(m * n)).map { _ in Float.random(in: -1...1, using: &generator) }
            func product(columns: Int?) -> [Float] {
                var c = bias
                c.withUnsafeMutableBufferPointer { c in
                    BLAS.gemmByRows(m: m, n: n, k: k, a: a, b: b, beta: 1, c: c.baseAddress!, columns: columns)
                }
                return c
            }
            let whole = product(columns: nil)
            for columns in [48, 100, n - 1] {
                let blocked = product(columns: columns)
                for i in 0..<(m * n) {
                    let (r, j) = (i / n, i % n)
                    let exact = Double(bias[i]) + (0..<k).reduce(0.0) { $0 + Double(a[r * k + $1]) * Double(b[j * k + $1]) }
                    #expect(abs(Double(blocked[i]) - exact) < 1e-4 && abs(Double(blocked[i]) - Double(whole[i])) < 1e-4,
                            "m \(m) n \(n) k \(k), blocks of \(columns): \(blocked[i]), whole \(whole[i]), exact \(exact)")
                }
            }
        }
    }

    /// The blocks follow OpenBLAS's rule for its AVX-512 small-matrix kernels (m·n ≤ 1200, m·n·k ≤ 100³, k ≥ 32),
    /// only where they pay (at least 48 columns), and only with kernels that have them.
    @Test func forwardBlocksFollowTheSmallMatrixRule() {
        #expect(BLAS.smallMatrixColumns(m: 10, n: 200, k: 784, kernels: "SkylakeX") == 120)
        #expect(BLAS.smallMatrixColumns(m: 24, n: 200, k: 784, kernels: "SkylakeX") == 50)
        #expect(BLAS.smallMatrixColumns(m: 10, n: 200, k: 200, kernels: "Cooperlake") == 120)
        #expect(BLAS.smallMatrixColumns(m: 6, n: 200, k: 784, kernels: "SkylakeX") == nil)  // whole product small enough
        #expect(BLAS.smallMatrixColumns(m: 64, n: 128, k: 784, kernels: "SkylakeX") == nil)  // blocks would be too narrow
        #expect(BLAS.smallMatrixColumns(m: 10, n: 200, k: 16, kernels: "SkylakeX") == nil)  // k below 32
        #expect(BLAS.smallMatrixColumns(m: 10, n: 200, k: 784, kernels: "Haswell") == nil)
        #expect(BLAS.smallMatrixColumns(m: 10, n: 200, k: 784, kernels: "Prescott") == nil)
    }

    /// Bytes to floats, as pixels become inputs: the bits of the scalar loop, for every byte value.
    @Test func scaledBytesMatchTheScalarLoop() {
        let bytes = (0..<600).map { UInt8($0 % 256) }
        var floats = [Float](repeating: .nan, count: bytes.count)
        floats.withUnsafeMutableBufferPointer { out in bytes.withUnsafeBufferPointer { BLAS.scale(bytes: $0.baseAddress!, by: 1 / 255, into: out.baseAddress!, count: 600) } }
        #expect(floats.map(\.bitPattern) == bytes.map { (Float($0) * (1 / 255)).bitPattern })
    }

    /// The ReLU's vectorised input gradient passes dy where the output is positive and 0 elsewhere (at 0, -0 and
    /// NaN too), as the scalar loop did.
    @Test func reluBackwardMatchesTheScalarLoop() throws {
        var generator = SystemRandomNumberGenerator()
        let width = 37, batch = 3
        let relu = Activation(.relu, width: width)
        var x = (0..<(width * batch)).map { _ in Float.random(in: -1...1, using: &generator) }
        x[0] = 0; x[1] = -0.0; x[2] = .leastNonzeroMagnitude; x[3] = .nan
        let dy = (0..<(width * batch)).map { _ in Float.random(in: -1...1, using: &generator) }
        let (y, dx) = x.withUnsafeBufferPointer { xs in
            let y = Array(UnsafeBufferPointer(start: relu.forward(xs.baseAddress!, batch: batch, pass: .inference), count: width * batch))
            let dx = dy.withUnsafeBufferPointer { Array(UnsafeBufferPointer(start: relu.backward($0.baseAddress!, batch: batch, needsInputGradient: true)!, count: width * batch)) }
            return (y, dx)
        }
        #expect(dx.map(\.bitPattern) == zip(y, dy).map { ($0 > 0 ? $1 : 0).bitPattern })
        #expect(dx[2] == dy[2] && dx[0] == 0 && dx[1] == 0)
    }

    /// The finiteness and magnitude checks that guard every gradient and update, on the values that matter.
    @Test func finitenessAndMagnitude() {
        func check(_ values: [Float]) -> (Bool, Float) {
            values.withUnsafeBufferPointer { (BLAS.allFinite($0), BLAS.maxMagnitude($0)) }
        }
        var values = (0..<1000).map { Float($0 % 17) * -0.25 }
        values[500] = -Float.greatestFiniteMagnitude
        values[3] = .leastNonzeroMagnitude
        #expect(check(values) == (true, Float.greatestFiniteMagnitude))
        #expect(check([-0.0, 0, 1e-40]) == (true, 1e-40))
        #expect(check([]) == (true, 0))
        for bad in [Float.nan, .infinity, -.infinity, -Float.nan] {
            var v = values
            v[999] = bad
            let (finite, magnitude) = check(v)
            #expect(!finite && magnitude.isNaN)
        }
    }
}

@Suite struct RefusedUpdateTests {
    /// The guard's answer, from bounds when they suffice and from a dry run when not, is what the step does: over
    /// gradients from 1 to 10³⁹ (infinite), rates, ε and decays, a step the guard passes leaves every value finite
    /// and one it refuses does not.
    @Test(arguments: [OptimizerSettings.Kind.adam, .adamw])
    func guardAgreesWithTheStep(kind: OptimizerSettings.Kind) {
        var rng = SeededRandom(seed: 9)
        var passed = 0, refused = 0
        for trial in 0..<400 {
            let n = 37
            let settings = OptimizerSettings(kind: kind, epsilon: [1e-8, 1e-30][trial % 2], weightDecay: [0, 0.5][trial / 2 % 2])
            let lr: Float = [1e-3, 1, 1e10][trial / 4 % 3]
            let start = (0..<n).map { _ in rng.nextGaussian() * [1, 1e20, 1e36][trial / 12 % 3] }
            let guarded = Optimizer(settings, parameterCount: n), stepped = Optimizer(settings, parameterCount: n)
            let pg = FloatBuffer(start), ps = FloatBuffer(start)
            for _ in 0..<3 {
                let g = FloatBuffer((0..<n).map { _ in rng.nextGaussian() })
                guarded.step(parameters: pg, gradients: g, learningRate: lr)
                stepped.step(parameters: ps, gradients: g, learningRate: lr)
            }
            let g = FloatBuffer((0..<n).map { _ in rng.nextGaussian() * Float(pow(10, Double(trial % 40))) })
            let stays = guarded.staysFinite(parameters: pg, gradients: g, learningRate: lr)
            stepped.step(parameters: ps, gradients: g, learningRate: lr)
            var state = RunState()
            stepped.save(into: &state, as: "o")
            let finite = (ps.array + state.vectors.values.joined()).allSatisfy(\.isFinite)
            #expect(stays == finite, "trial \(trial)")
            if stays { passed += 1 } else { refused += 1 }
        }
        #expect(passed > 0 && refused > 0)
    }

    /// An update that would overflow (Adam's second moment from a gradient of 1e38, SGD's parameters from a huge
    /// rate) is refused and changes nothing, parameters and optimizer state alike; a normal one is applied exactly
    /// as `apply` applies it.
    @Test(arguments: [(OptimizerSettings.Kind.adam, Float(1e-3), Float(1e38)), (.sgd, 1e30, 1e10), (.momentum, 1e30, 1e10)])
    func overflowingUpdatesAreRefused(kind: OptimizerSettings.Kind, rate: Float, gradient: Float) throws {
        let spec = try ModelSpec(widths: [3, 2])
        func update() -> ParameterUpdate {
            ParameterUpdate(network: Network(spec: spec, seed: 1), optimizer: OptimizerSettings(kind: kind), schedule: LearningRateSchedule(base: rate))
        }
        let guarded = update(), plain = update()
        for u in [guarded, plain] { for i in 0..<u.network.parameterCount { u.network.gradients[i] = 0.5 } }
        #expect(guarded.applyIfFinite(stepsPerEpoch: 1, totalSteps: 10))
        plain.apply(stepsPerEpoch: 1, totalSteps: 10)
        #expect(guarded.network.parameters.array == plain.network.parameters.array)

        let before = guarded.network.parameters.array
        for i in 0..<guarded.network.parameterCount { guarded.network.gradients[i] = gradient }
        #expect(!guarded.applyIfFinite(stepsPerEpoch: 1, totalSteps: 10))
        #expect(guarded.network.parameters.array == before && guarded.step == 1)
        // The optimizer's state did not move either: the next normal step matches the unguarded run's.
        for u in [guarded, plain] { for i in 0..<u.network.parameterCount { u.network.gradients[i] = -0.25 } }
        #expect(guarded.applyIfFinite(stepsPerEpoch: 1, totalSteps: 10))
        plain.apply(stepsPerEpoch: 1, totalSteps: 10)
        #expect(guarded.network.parameters.array == plain.network.parameters.array)
    }
}
