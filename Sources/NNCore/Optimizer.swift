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
    }

    /// Whether `step` would leave every parameter and every value of the optimizer's state finite; changes nothing.
    public func staysFinite(parameters: FloatBuffer, gradients: FloatBuffer, learningRate lr: Float) -> Bool {
        steps += 1
        defer { steps -= 1 }
        return update(parameters: parameters, gradients: gradients, learningRate: lr, dryRun: true)
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
            let b1 = settings.beta1, b2 = settings.beta2
            let t = Double(steps)
            return nn_adam_update(p, g, first.base, second.base, n, b1, b2,
                                  lr / Float(1 - pow(Double(b1), t)), 1 / Float((1 - pow(Double(b2), t)).squareRoot()), settings.epsilon,
                                  settings.kind == .adam ? wd : 0, settings.kind == .adamw ? 1 - lr * wd : 1, dry) != 0
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
