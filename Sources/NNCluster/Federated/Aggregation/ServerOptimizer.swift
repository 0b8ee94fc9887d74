import NNCore

/// A server step on the pseudo-gradient w_global − aggregate (Reddi et al. 2021): momentum for FedAvgM
/// (Hsu et al. 2019), Adam for FedAdam. A server rate of 1 without momentum would give the aggregate itself.
public final class ServerOptimizer {
    public let optimizer: Optimizer
    public let learningRate: Float

    public init(_ settings: OptimizerSettings, learningRate: Float, parameterCount: Int) {
        optimizer = Optimizer(settings, parameterCount: parameterCount)
        self.learningRate = learningRate
    }

    /// Moves `global` towards `aggregate`, which it overwrites with the pseudo-gradient.
    func step(global: FloatBuffer, aggregate: FloatBuffer) {
        let w = global.base, a = aggregate.base
        for i in 0..<global.count { a[i] = w[i] - a[i] }
        optimizer.step(parameters: global, gradients: aggregate, learningRate: learningRate)
    }
}
