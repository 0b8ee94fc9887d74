import ArgumentParser
import NNCore

/// The architecture flags shared by every command that builds a network.
struct ModelOptions: ParsableArguments {
    @Option(help: "Layer widths joined by '-': input, hidden layers, classes.")
    var model: String = "784-128-10"

    @Option(help: "Hidden activation: relu, sigmoid, tanh.")
    var activation: Activation.Kind = .relu

    @Option(help: "Weight init: xavier-uniform, xavier-normal, he-uniform, he-normal (default: xavier-uniform).")
    var initializer: Initializer?

    @Flag(help: "Batch normalisation after every hidden dense layer.")
    var batchNorm = false

    @Option(help: "Dropout rate after every hidden activation.")
    var dropout: Float = 0

    @Option(help: "Residual blocks (x + Dense(act(Dense(x)))) at the last hidden width.")
    var residualBlocks: Int = 0

    @Option(help: "Loss: cross-entropy, bce, mse.")
    var loss: Loss = .crossEntropy

    func spec() throws -> ModelSpec {
        try ModelSpec(widths: try ModelSpec.widths(parsing: model), activation: activation, initializer: initializer,
                      batchNorm: batchNorm, dropout: dropout, residualBlocks: residualBlocks, loss: loss)
    }
}

/// Optimizer, schedule and regularisation flags.
struct OptimizationOptions: ParsableArguments {
    @Option(help: "Optimizer: sgd, momentum, nesterov, adam, adamw.")
    var optimizer: OptimizerSettings.Kind = .adam

    @Option(help: "Learning rate.")
    var lr: Float = 0.001

    @Option(help: "Momentum for momentum and nesterov.")
    var momentum: Float = 0.9

    @Option(help: "Adam β1.")
    var beta1: Float = 0.9

    @Option(help: "Adam β2.")
    var beta2: Float = 0.999

    @Option(help: "L2 weight decay (decoupled for adamw).")
    var weightDecay: Float = 0

    @Option(help: "Learning-rate schedule: constant, step, cosine.")
    var schedule: LearningRateSchedule.Kind = .constant

    @Option(help: "Step schedule: decay every this many epochs.")
    var stepEpochs: Int = 5

    @Option(help: "Step schedule: decay factor.")
    var gamma: Float = 0.1

    @Option(help: "Cosine schedule: final learning rate.")
    var minLr: Float = 0

    @Option(help: "Linear warm-up over this many steps.")
    var warmupSteps: Int = 0

    @Option(help: "Clip the global gradient norm to this value.")
    var clip: Float?

    func validate() throws {
        guard lr > 0, lr.isFinite else { throw ValidationError("--lr must be a positive number") }
        guard weightDecay >= 0 else { throw ValidationError("--weight-decay cannot be negative") }
        guard (0..<1).contains(momentum), (0..<1).contains(beta1), (0..<1).contains(beta2) else {
            throw ValidationError("--momentum, --beta1 and --beta2 must be in [0, 1)")
        }
        guard stepEpochs >= 1, gamma > 0, minLr >= 0, warmupSteps >= 0 else {
            throw ValidationError("--step-epochs must be ≥ 1, --gamma > 0, --min-lr and --warmup-steps ≥ 0")
        }
        if let clip, !(clip > 0) { throw ValidationError("--clip must be positive") }
    }

    var settings: OptimizerSettings {
        OptimizerSettings(kind: optimizer, momentum: momentum, beta1: beta1, beta2: beta2, weightDecay: weightDecay)
    }

    var learningRate: LearningRateSchedule {
        LearningRateSchedule(base: lr, kind: schedule, stepEpochs: stepEpochs, gamma: gamma, minimum: minLr, warmupSteps: warmupSteps)
    }
}

/// Batch, epochs, seed and outputs of a training run, local or distributed.
struct RunOptions: ParsableArguments {
    @Option(help: "Mini-batch size (per worker in a distributed run, whose global batch is workers × batch).")
    var batch: Int = 64

    @Option(help: "Passes over the training set.")
    var epochs: Int = 10

    @Option(help: "Seed for initialisation, shuffling and dropout.")
    var seed: UInt64 = 1

    @Option(help: "Write the trained model here (safetensors).", completion: .file(extensions: ["safetensors"]))
    var out: String?

    @Option(help: "Write one JSON object per epoch to this file.")
    var metrics: String?

    func validate() throws {
        guard batch >= 1 else { throw ValidationError("--batch must be at least 1") }
        guard epochs >= 1 else { throw ValidationError("--epochs must be at least 1") }
    }
}
