/// Loss and gradient of one batch: a forward pass in training mode, the loss, and the backward pass. No
/// optimizer: a worker computes gradients for a coordinator with this alone, and `Trainer` adds the step.
public final class Backpropagation {
    public let network: Network
    /// Seeds dropout masks, with the step and each row's position (see `Pass`).
    public let seed: UInt64
    private var logitGradient: Workspace

    public init(network: Network, seed: UInt64) {
        self.network = network
        self.seed = seed
        logitGradient = Workspace(width: network.spec.classes)
    }

    /// The batch's mean loss and correctly classified samples.
    public struct Result: Sendable {
        public var loss: Double
        public var correct: Int
    }

    /// Forward and backward on `batch` rows; leaves the gradient of the mean loss in `network.gradients`, or with a
    /// `descent` rate takes a plain SGD step on the parameters in the backward pass instead (`Layer.backward`).
    /// `step` and `firstRow` place the batch within a run and within a larger global batch, for dropout masks.
    public func run(x: UnsafePointer<Float>, labels: UnsafePointer<Int32>, batch: Int, step: UInt64, firstRow: Int = 0, descent: Float? = nil) -> Result {
        let classes = network.spec.classes
        let logits = network.forward(x, batch: batch, pass: .training(seed: seed, step: step, firstRow: firstRow))
        let dLogits = logitGradient.rows(batch)
        let loss = network.spec.loss.evaluate(logits: logits, labels: labels, batch: batch, classes: classes, gradient: dLogits)
        var correct = 0
        for r in 0..<batch where Network.argmax(logits + r * classes, classes) == Int(labels[r]) { correct += 1 }
        network.backward(dLogits, batch: batch, descent: descent)
        return Result(loss: loss, correct: correct)
    }
}
