/// Batch normalisation over the batch dimension (Ioffe & Szegedy 2015).
///
/// Training normalises with the batch's mean and biased variance and updates the running statistics
/// (running = (1 − momentum)·running + momentum·batch, unbiased variance), as PyTorch does; inference uses the
/// running statistics. γ and β are parameters, the running statistics are state.
public final class BatchNorm: Layer {
    public let inputWidth: Int
    public var outputWidth: Int { inputWidth }
    public let momentum: Float
    public let epsilon: Float

    private var gamma: UnsafeMutablePointer<Float>!, beta: UnsafeMutablePointer<Float>!
    private var dGamma: UnsafeMutablePointer<Float>!, dBeta: UnsafeMutablePointer<Float>!
    private var runningMean: UnsafeMutablePointer<Float>!, runningVariance: UnsafeMutablePointer<Float>!
    private let mean: FloatBuffer, inverseStd: FloatBuffer, sumDy: FloatBuffer, sumDyXhat: FloatBuffer
    private var normalized: Workspace
    private var output: Workspace
    private var inputGradient: Workspace

    public init(width: Int, momentum: Float = 0.1, epsilon: Float = 1e-5) {
        inputWidth = width
        self.momentum = momentum
        self.epsilon = epsilon
        mean = FloatBuffer(count: width); inverseStd = FloatBuffer(count: width)
        sumDy = FloatBuffer(count: width); sumDyXhat = FloatBuffer(count: width)
        normalized = Workspace(width: width)
        output = Workspace(width: width)
        inputGradient = Workspace(width: width)
    }

    public var parameterTensors: [TensorSpec] {
        [TensorSpec(name: "weight", shape: [inputWidth]), TensorSpec(name: "bias", shape: [inputWidth])]
    }
    public var stateTensors: [TensorSpec] {
        [TensorSpec(name: "running_mean", shape: [inputWidth]), TensorSpec(name: "running_var", shape: [inputWidth])]
    }

    public func bind(parameters: UnsafeMutablePointer<Float>, gradients: UnsafeMutablePointer<Float>, state: UnsafeMutablePointer<Float>) {
        gamma = parameters; beta = parameters + inputWidth
        dGamma = gradients; dBeta = gradients + inputWidth
        runningMean = state; runningVariance = state + inputWidth
    }

    public func initialize(_ rng: inout SeededRandom) {
        gamma.update(repeating: 1, count: inputWidth); beta.update(repeating: 0, count: inputWidth)
        runningMean.update(repeating: 0, count: inputWidth); runningVariance.update(repeating: 1, count: inputWidth)
    }

    public func forward(_ x: UnsafePointer<Float>, batch: Int, pass: Pass) -> UnsafePointer<Float> {
        let w = inputWidth
        let y = output.rows(batch), xhat = normalized.rows(batch)
        let mu = mean.base, inv = inverseStd.base
        if pass.mode == .training {
            mu.update(repeating: 0, count: w)
            inv.update(repeating: 0, count: w)
            for r in 0..<batch { let row = x + r * w; for j in 0..<w { mu[j] += row[j] } }
            let n = Float(batch)
            // Unbiased variance for the running statistics; a one-sample batch (an epoch's last, or a worker's
            // slice) has none, and leaves the biased one.
            let unbias = batch > 1 ? n / (n - 1) : 1
            for j in 0..<w { mu[j] /= n }
            for r in 0..<batch { let row = x + r * w; for j in 0..<w { let d = row[j] - mu[j]; inv[j] += d * d } }
            for j in 0..<w {
                let variance = inv[j] / n
                runningMean[j] = (1 - momentum) * runningMean[j] + momentum * mu[j]
                runningVariance[j] = (1 - momentum) * runningVariance[j] + momentum * variance * unbias
                inv[j] = 1 / (variance + epsilon).squareRoot()
            }
        } else {
            for j in 0..<w {
                mu[j] = runningMean[j]
                inv[j] = 1 / (runningVariance[j] + epsilon).squareRoot()
            }
        }
        for r in 0..<batch {
            let xr = x + r * w, hr = xhat + r * w, yr = y + r * w
            for j in 0..<w {
                hr[j] = (xr[j] - mu[j]) * inv[j]
                yr[j] = gamma[j] * hr[j] + beta[j]
            }
        }
        return UnsafePointer(y)
    }

    /// dx = γ·σ⁻¹/N · (N·dy − Σdy − x̂·Σ(dy·x̂)), the gradient through the batch statistics.
    public func backward(_ dy: UnsafePointer<Float>, batch: Int, needsInputGradient: Bool, descent: Float?) -> UnsafePointer<Float>? {
        let w = inputWidth
        let xhat = normalized.rows(batch)
        let s1 = sumDy.base, s2 = sumDyXhat.base
        s1.update(repeating: 0, count: w)
        s2.update(repeating: 0, count: w)
        for r in 0..<batch {
            let g = dy + r * w, h = xhat + r * w
            for j in 0..<w { s1[j] += g[j]; s2[j] += g[j] * h[j] }
        }
        dBeta.update(from: s1, count: w)
        dGamma.update(from: s2, count: w)
        // dX with γ before a descent moves it.
        var dx: UnsafeMutablePointer<Float>?
        if needsInputGradient {
            dx = inputGradient.rows(batch)
            let n = Float(batch), inv = inverseStd.base
            for r in 0..<batch {
                let g = dy + r * w, h = xhat + r * w, d = dx! + r * w
                for j in 0..<w { d[j] = gamma[j] * inv[j] / n * (n * g[j] - s1[j] - h[j] * s2[j]) }
            }
        }
        if let rate = descent {
            for j in 0..<w { gamma[j] -= rate * s2[j]; beta[j] -= rate * s1[j] }
        }
        return dx.map { UnsafePointer($0) }
    }
}
