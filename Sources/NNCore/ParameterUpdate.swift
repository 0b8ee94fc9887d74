/// The optimisation step on a network's gradient vector: clipping of the global norm, the scheduled learning
/// rate and the optimizer. Separate from `Backpropagation` so that a distributed run can average gradients
/// from many workers before one update.
public final class ParameterUpdate: Resumable {
    public let network: Network
    public let optimizer: Optimizer
    public let schedule: LearningRateSchedule
    /// Clip the global gradient norm to this value when set.
    public let clipNorm: Float?
    /// Updates applied so far; drives the schedule (and, in `Trainer`, the dropout masks).
    public private(set) var step = 0
    /// The rate the last update used.
    public private(set) var learningRate: Float = 0

    public init(network: Network, optimizer: OptimizerSettings, schedule: LearningRateSchedule, clipNorm: Float? = nil) {
        self.network = network
        self.optimizer = Optimizer(optimizer, parameterCount: network.parameterCount)
        self.schedule = schedule
        self.clipNorm = clipNorm
    }

    /// The network, the optimizer and the position in the schedule, for a run state.
    public func save(into state: inout RunState) {
        state.set(network, as: "model")
        optimizer.save(into: &state, as: "optimizer")
        state.values["update.step"] = String(step)
        state.values["update.learning_rate"] = String(learningRate.bitPattern)
    }

    public func restore(from state: RunState) throws {
        try state.restore(network, from: "model")
        try optimizer.restore(from: state, as: "optimizer")
        step = try state.integer("update.step")
        guard let bits = UInt32(try state.value("update.learning_rate")) else { throw FileError("the run state's learning rate is not a number") }
        learningRate = Float(bitPattern: bits)
    }

    /// Clips and applies `network.gradients` with the scheduled learning rate, then advances the step.
    public func apply(stepsPerEpoch: Int, totalSteps: Int) {
        let rate = prepare(stepsPerEpoch: stepsPerEpoch, totalSteps: totalSteps)
        commit(rate)
    }

    /// As `apply`, unless the update would leave a parameter or the optimizer's state non-finite: then nothing
    /// changes and it returns false. The check is one more pass of the update without storing it; a distributed
    /// run pays it, where one peer's answer could otherwise break the model.
    public func applyIfFinite(stepsPerEpoch: Int, totalSteps: Int) -> Bool {
        let rate = prepare(stepsPerEpoch: stepsPerEpoch, totalSteps: totalSteps)
        guard optimizer.staysFinite(parameters: network.parameters, gradients: network.gradients, learningRate: rate) else { return false }
        commit(rate)
        return true
    }

    /// Clips the gradient in place and returns the scheduled rate of this step.
    private func prepare(stepsPerEpoch: Int, totalSteps: Int) -> Float {
        let gradients = network.gradients
        if let clipNorm {
            let norm = Float(BLAS.sumOfSquares(gradients.base, count: gradients.count).squareRoot())
            if norm > clipNorm {
                let scale = clipNorm / norm
                for i in 0..<gradients.count { gradients.base[i] *= scale }
            }
        }
        return schedule.rate(step: step, stepsPerEpoch: stepsPerEpoch, totalSteps: totalSteps)
    }

    private func commit(_ rate: Float) {
        learningRate = rate
        optimizer.step(parameters: network.parameters, gradients: network.gradients, learningRate: rate)
        step += 1
    }
}
