import NNCore

/// The settings of a training run, in one process or by synchronous SGD: model, optimisation, batch (per
/// worker in a distributed run), epochs, seed, and where the checkpoint goes.
public struct TrainingSettings: Sendable {
    public var model: ModelSpec
    public var optimizer: OptimizerSettings
    public var schedule: LearningRateSchedule
    public var clip: Float?
    public var seed: UInt64
    public var batch: Int
    public var epochs: Int
    /// The data set's name, for the checkpoint's metadata.
    public var dataset: String
    /// Write the model here (safetensors) at the end, and on a failure after training started.
    public var checkpoint: String?
    /// Synchronous SGD: combine the workers' gradients robustly instead of by their exact mean.
    public var robust: RobustGradients?
    /// In one process: threads that compute each batch's gradient, each on a slice (see `ParallelBackpropagation`).
    public var batchThreads = 1

    public init(model: ModelSpec, optimizer: OptimizerSettings, schedule: LearningRateSchedule, clip: Float? = nil, seed: UInt64,
                batch: Int, epochs: Int, dataset: String, checkpoint: String? = nil) {
        self.model = model; self.optimizer = optimizer; self.schedule = schedule; self.clip = clip; self.seed = seed
        self.batch = batch; self.epochs = epochs; self.dataset = dataset; self.checkpoint = checkpoint
    }
}
