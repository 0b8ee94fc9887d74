import CKernels
import Foundation

/// Optimizer settings, stored with a checkpoint's training metadata.
public struct OptimizerSettings: Codable, Equatable, Sendable {
    public enum Kind: String, Codable, CaseIterable, Sendable {
        case sgd, momentum, nesterov, adam, adamw
    }
    public var kind: Kind
    public var momentum: Float = 0.9
    public var beta1: Float = 0.9
    public var beta2: Float = 0.999
    public var epsilon: Float = 1e-8
    /// L2 penalty added to the gradient; for AdamW it is decoupled (p ← p − lr·wd·p).
    public var weightDecay: Float = 0

    public init(kind: Kind, momentum: Float = 0.9, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8, weightDecay: Float = 0) {
        self.kind = kind; self.momentum = momentum; self.beta1 = beta1; self.beta2 = beta2
        self.epsilon = epsilon; self.weightDecay = weightDecay
    }
}

/// Updates a flat parameter vector from a flat gradient vector; the update rules follow PyTorch's
/// (SGD with dampening 0, Adam with bias correction, AdamW with decoupled decay).
public final class Optimizer {
    public let settings: OptimizerSettings
    private let first: FloatBuffer, second: FloatBuffer
    public private(set) var steps = 0
    /// Adam's largest |m| and largest v as its last update stored them (zero at the start); nil after a restore.
    private var momentBounds: (first: Float, second: Float)? = (0, 0)

    public init(_ settings: OptimizerSettings, parameterCount: Int) {
        self.settings = settings
        let needsFirst = settings.kind != .sgd, needsSecond = settings.kind == .adam || settings.kind == .adamw
        first = FloatBuffer(count: needsFirst ? parameterCount : 0)
        second = FloatBuffer(count: needsSecond ? parameterCount : 0)
    }

    public func step(parameters: FloatBuffer, gradients: FloatBuffer, learningRate lr: Float) {
        steps += 1
        _ = update(parameters: parameters, gradients: gradients, learningRate: lr, dryRun: false)
    }

    /// The step count and moments, for a run state under `prefix`.
    public func save(into state: inout RunState, as prefix: String) {
        state.values["\(prefix).steps"] = String(steps)
        state.vectors["\(prefix).first"] = first.array
        state.vectors["\(prefix).second"] = second.array
    }

    public func restore(from state: RunState, as prefix: String) throws {
        let savedFirst = try state.vector("\(prefix).first", count: first.count), savedSecond = try state.vector("\(prefix).second", count: second.count)
        steps = try state.integer("\(prefix).steps")
        savedFirst.withUnsafeBufferPointer { if let b = $0.baseAddress { first.base.update(from: b, count: $0.count) } }
        savedSecond.withUnsafeBufferPointer { if let b = $0.baseAddress { second.base.update(from: b, count: $0.count) } }
        momentBounds = nil
    }

    /// Whether `step` would leave every parameter and every value of the optimizer's state finite; changes nothing.
    public func staysFinite(parameters: FloatBuffer, gradients: FloatBuffer, learningRate lr: Float) -> Bool {
        steps += 1
        defer { steps -= 1 }
        return certainlyFinite(parameters: parameters, gradients: gradients, learningRate: lr)
            || update(parameters: parameters, gradients: gradients, learningRate: lr, dryRun: true)
    }

    /// Whether Adam's step is certain to leave every value finite, told from bounds alone: the largest gradient and
    /// parameter (one read of each) and the moments' bounds kept from the last update. Then the step needs no dry
    /// run, a pass over four vectors with a square root and a division each; when the bounds cannot tell, the dry
    /// run decides. Each new value is then at most 10³⁷, and a few roundings of that stay below Float's 3.4·10³⁸.
    private func certainlyFinite(parameters: FloatBuffer, gradients: FloatBuffer, learningRate lr: Float) -> Bool {
        guard let bounds = momentBounds, settings.kind == .adam || settings.kind == .adamw else { return false }
        let b1 = Double(settings.beta1), b2 = Double(settings.beta2), epsilon = Double(settings.epsilon)
        let c = adamCoefficients(lr)
        guard (0..<1).contains(b1), (0..<1).contains(b2), epsilon > 0, c.inverseRootCorrection.isFinite else { return false }
        // NaN, failing every comparison below, when a value is not finite.
        let p = Double(BLAS.maxMagnitude(UnsafeBufferPointer(start: parameters.base, count: parameters.count)))
        let d = Double(BLAS.maxMagnitude(UnsafeBufferPointer(start: gradients.base, count: gradients.count))) + Double(abs(c.coupledDecay)) * p
        // |m′| ≤ max(|m|, |d|) and 0 ≤ v′ ≤ max(v, d²); the divisor of m′ is at least ε.
        let m = Double(bounds.first) + d, v = Double(bounds.second) + d * d
        let limit = 1e37
        return d <= limit && m <= limit && v <= limit && p * Double(abs(c.decay)) + Double(abs(c.stepSize)) * m / epsilon <= limit
    }

    /// Adam's step size (with the first moment's bias correction), the second moment's correction, and the decay
    /// coupled to the gradient (Adam) or applied to the parameters (AdamW), at the step `steps`.
    private func adamCoefficients(_ lr: Float) -> (stepSize: Float, inverseRootCorrection: Float, coupledDecay: Float, decay: Float) {
        let b1 = settings.beta1, b2 = settings.beta2, wd = settings.weightDecay
        let t = Double(steps)
        return (lr / Float(1 - pow(Double(b1), t)), 1 / Float((1 - pow(Double(b2), t)).squareRoot()),
                settings.kind == .adam ? wd : 0, settings.kind == .adamw ? 1 - lr * wd : 1)
    }

    /// The update of step `steps`: stored unless `dryRun`; true when every new value is finite.
    private func update(parameters: FloatBuffer, gradients: FloatBuffer, learningRate lr: Float, dryRun: Bool) -> Bool {
        precondition(parameters.count == gradients.count)
        let n = parameters.count, p = parameters.base, g = gradients.base
        let wd = settings.weightDecay, dry: Int32 = dryRun ? 1 : 0
        switch settings.kind {
        case .sgd:
            return nn_sgd_update(p, g, n, lr, wd, dry) != 0
        case .momentum, .nesterov:
            return nn_momentum_update(p, g, first.base, n, lr, wd, settings.momentum, settings.kind == .nesterov ? 1 : 0, dry) != 0
        case .adam, .adamw:
            let c = adamCoefficients(lr)
            var bounds: (Float, Float) = (0, 0)
            let finite = withUnsafeMutableBytes(of: &bounds) {
                nn_adam_update(p, g, first.base, second.base, n, settings.beta1, settings.beta2, c.stepSize, c.inverseRootCorrection,
                               settings.epsilon, c.coupledDecay, c.decay, dry, $0.baseAddress!.assumingMemoryBound(to: Float.self)) != 0
            }
            if !dryRun { momentBounds = bounds.0.isNaN || bounds.1.isNaN ? nil : (bounds.0, bounds.1) }
            return finite
        }
    }
}

/// Learning rate as a function of the global step: an optional linear warm-up, then constant, step decay or
/// cosine annealing over the remaining steps.
public struct LearningRateSchedule: Codable, Equatable, Sendable {
    public enum Kind: String, Codable, CaseIterable, Sendable { case constant, step, cosine }
    public var base: Float
    public var kind: Kind = .constant
    /// For `.step`: multiply by `gamma` every `stepEpochs` epochs.
    public var stepEpochs: Int = 5
    public var gamma: Float = 0.1
    /// For `.cosine`: the rate at the last step.
    public var minimum: Float = 0
    public var warmupSteps: Int = 0

    public init(base: Float, kind: Kind = .constant, stepEpochs: Int = 5, gamma: Float = 0.1, minimum: Float = 0, warmupSteps: Int = 0) {
        self.base = base; self.kind = kind; self.stepEpochs = stepEpochs; self.gamma = gamma
        self.minimum = minimum; self.warmupSteps = warmupSteps
    }

    /// The rate for zero-based `step` of `totalSteps`, with `stepsPerEpoch` steps in an epoch.
    public func rate(step: Int, stepsPerEpoch: Int, totalSteps: Int) -> Float {
        if step < warmupSteps { return base * Float(step + 1) / Float(warmupSteps) }
        switch kind {
        case .constant:
            return base
        case .step:
            return base * pow(gamma, Float(step / max(stepsPerEpoch * stepEpochs, 1)))
        case .cosine:
            let span = max(totalSteps - warmupSteps, 1)
            let progress = Double(step - warmupSteps) / Double(span)
            return minimum + (base - minimum) * Float(0.5 * (1 + cos(Double.pi * min(progress, 1))))
        }
    }
}
