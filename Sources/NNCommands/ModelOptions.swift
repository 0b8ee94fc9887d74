import ArgumentParser
import NNCluster
import NNCore

/// The architecture flags shared by every command that builds a network. Unset options are nil, so that a
/// command can tell which were given (an experiment file fixes them); their defaults are applied in `spec()`.
struct ModelOptions: ParsableArguments {
    @Option(help: "Layer widths joined by '-': input, hidden layers, classes (default: 784-128-10).")
    var model: String?

    @Option(help: "Hidden activation: relu, sigmoid, tanh (default: relu).")
    var activation: Activation.Kind?

    @Option(help: "Weight init: xavier-uniform, xavier-normal, he-uniform, he-normal (default: xavier-uniform).")
    var initializer: Initializer?

    @Flag(help: "Batch normalisation after every hidden dense layer.")
    var batchNorm = false

    @Option(help: "Dropout rate after every hidden activation (default: 0).")
    var dropout: Float?

    @Option(help: "Residual blocks (x + Dense(act(Dense(x)))) at the last hidden width (default: 0).")
    var residualBlocks: Int?

    @Option(help: "Loss: cross-entropy, bce, mse (default: cross-entropy).")
    var loss: Loss?

    func spec() throws -> ModelSpec {
        try ModelSpec(widths: try ModelSpec.widths(parsing: model ?? "784-128-10"), activation: activation ?? .relu, initializer: initializer,
                      batchNorm: batchNorm, dropout: dropout ?? 0, residualBlocks: residualBlocks ?? 0, loss: loss ?? .crossEntropy)
    }

    /// The options given on the command line.
    var given: [String] {
        [("--model", model != nil), ("--activation", activation != nil), ("--initializer", initializer != nil), ("--batch-norm", batchNorm),
         ("--dropout", dropout != nil), ("--residual-blocks", residualBlocks != nil), ("--loss", loss != nil)].filter(\.1).map(\.0)
    }
}

/// Optimizer, schedule and regularisation flags; unset ones are nil (see `ModelOptions`).
struct OptimizationOptions: ParsableArguments {
    @Option(help: "Optimizer: sgd, momentum, nesterov, adam, adamw (default: adam).")
    var optimizer: OptimizerSettings.Kind?

    @Option(help: "Learning rate (default: 0.001).")
    var lr: Float?

    @Option(help: "Momentum for momentum and nesterov (default: 0.9).")
    var momentum: Float?

    @Option(help: "Adam β1 (default: 0.9).")
    var beta1: Float?

    @Option(help: "Adam β2 (default: 0.999).")
    var beta2: Float?

    @Option(help: "L2 weight decay, decoupled for adamw (default: 0).")
    var weightDecay: Float?

    @Option(help: "Learning-rate schedule: constant, step, cosine (default: constant).")
    var schedule: LearningRateSchedule.Kind?

    @Option(help: "Step schedule: decay every this many epochs (default: 5).")
    var stepEpochs: Int?

    @Option(help: "Step schedule: decay factor (default: 0.1).")
    var gamma: Float?

    @Option(help: "Cosine schedule: final learning rate (default: 0).")
    var minLr: Float?

    @Option(help: "Linear warm-up over this many steps (default: 0).")
    var warmupSteps: Int?

    @Option(help: "Clip the global gradient norm to this value.")
    var clip: Float?

    func validate() throws {
        let s = settings, r = learningRate
        guard r.base > 0, r.base.isFinite else { throw ValidationError("--lr must be a positive number") }
        guard s.weightDecay >= 0 else { throw ValidationError("--weight-decay cannot be negative") }
        guard (0..<1).contains(s.momentum), (0..<1).contains(s.beta1), (0..<1).contains(s.beta2) else {
            throw ValidationError("--momentum, --beta1 and --beta2 must be in [0, 1)")
        }
        guard r.stepEpochs >= 1, r.gamma > 0, r.minimum >= 0, r.warmupSteps >= 0 else {
            throw ValidationError("--step-epochs must be ≥ 1, --gamma > 0, --min-lr and --warmup-steps ≥ 0")
        }
        if let clip, !(clip > 0) { throw ValidationError("--clip must be positive") }
    }

    /// The optimizer with the defaults of `OptimizerSettings` for what was not given.
    var settings: OptimizerSettings {
        var s = OptimizerSettings(kind: optimizer ?? .adam)
        if let momentum { s.momentum = momentum }
        if let beta1 { s.beta1 = beta1 }
        if let beta2 { s.beta2 = beta2 }
        if let weightDecay { s.weightDecay = weightDecay }
        return s
    }

    /// The schedule with the defaults of `LearningRateSchedule` for what was not given.
    var learningRate: LearningRateSchedule {
        var r = LearningRateSchedule(base: lr ?? 0.001, kind: schedule ?? .constant)
        if let stepEpochs { r.stepEpochs = stepEpochs }
        if let gamma { r.gamma = gamma }
        if let minLr { r.minimum = minLr }
        if let warmupSteps { r.warmupSteps = warmupSteps }
        return r
    }

    var given: [String] {
        [("--optimizer", optimizer != nil), ("--lr", lr != nil), ("--momentum", momentum != nil), ("--beta1", beta1 != nil),
         ("--beta2", beta2 != nil), ("--weight-decay", weightDecay != nil), ("--schedule", schedule != nil), ("--step-epochs", stepEpochs != nil),
         ("--gamma", gamma != nil), ("--min-lr", minLr != nil), ("--warmup-steps", warmupSteps != nil), ("--clip", clip != nil)].filter(\.1).map(\.0)
    }
}

/// Batch, epochs and seed of a training run, local or distributed; unset ones are nil (see `ModelOptions`).
struct RunOptions: ParsableArguments {
    @Option(help: "Mini-batch size, per worker in a distributed run, whose global batch is workers × batch (default: 64).")
    var batch: Int?

    @Option(help: "Passes over the training set (default: 10).")
    var epochs: Int?

    @Option(help: "Seed for initialisation, shuffling and dropout (default: 1).")
    var seed: UInt64?

    func validate() throws {
        guard (batch ?? 1) >= 1 else { throw ValidationError("--batch must be at least 1") }
        guard (epochs ?? 1) >= 1 else { throw ValidationError("--epochs must be at least 1") }
    }

    var given: [String] { [("--batch", batch != nil), ("--epochs", epochs != nil), ("--seed", seed != nil)].filter(\.1).map(\.0) }
}

/// Where a run writes its model and its per-epoch or per-round metrics.
struct OutputOptions: ParsableArguments {
    @Option(help: "Write the trained model here (safetensors).", completion: .file(extensions: ["safetensors"]))
    var out: String?

    @Option(help: "Write one JSON object per epoch (or round) to this file.")
    var metrics: String?

    @Option(help: ArgumentHelp("Write TensorBoard event files to this folder: every metric as a scalar, and the weights' histograms, per epoch or round (`tensorboard --logdir FOLDER`).", valueName: "folder"),
            completion: .directory)
    var tensorboard: String?
}

/// The model, optimisation and run flags of a training command, as the settings of a run.
struct TrainingOptions: ParsableArguments {
    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var optimization: OptimizationOptions
    @OptionGroup var runOptions: RunOptions

    func settings(dataset: String, checkpoint: String?) throws -> TrainingSettings {
        TrainingSettings(model: try modelOptions.spec(), optimizer: optimization.settings, schedule: optimization.learningRate,
                         clip: optimization.clip, seed: runOptions.seed ?? 1, batch: runOptions.batch ?? 64, epochs: runOptions.epochs ?? 10,
                         dataset: dataset, checkpoint: checkpoint)
    }

    /// The options given on the command line.
    var given: [String] { modelOptions.given + optimization.given + runOptions.given }
}
