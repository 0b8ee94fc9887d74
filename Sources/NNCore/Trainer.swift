/// Labelled samples that can be gathered into a float batch; implemented by the data layer.
public protocol BatchSource {
    var sampleCount: Int { get }
    var inputWidth: Int { get }
    /// Writes the samples at `indices` as rows of `x` (`indices.count × inputWidth`) and their labels.
    func gather(_ indices: ArraySlice<Int>, into x: UnsafeMutablePointer<Float>, labels: UnsafeMutablePointer<Int32>)
}

public struct TrainingError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Mean loss and confusion matrix of a network on a data set.
public struct Evaluation: Sendable {
    public var loss: Double
    public var confusion: ConfusionMatrix
    public var accuracy: Double { confusion.accuracy }

    /// The evaluation of the union of disjoint parts.
    public static func merging(_ parts: [Evaluation]) -> Evaluation {
        var confusion = ConfusionMatrix(classes: parts[0].confusion.classes)
        var lossSum = 0.0
        for part in parts {
            confusion.add(part.confusion)
            lossSum += part.loss * Double(part.confusion.total)
        }
        return Evaluation(loss: lossSum / Double(max(confusion.total, 1)), confusion: confusion)
    }
}

/// Reusable batch buffers, so that neither training nor evaluation allocates per batch.
public final class BatchBuffer {
    public let x: FloatBuffer
    public let labels: UnsafeMutablePointer<Int32>
    public let capacity: Int

    public init(capacity: Int, inputWidth: Int) {
        self.capacity = capacity
        x = FloatBuffer(count: capacity * inputWidth)
        labels = .allocate(capacity: capacity)
        labels.initialize(repeating: 0, count: capacity)
    }

    deinit { labels.deallocate() }
}

extension Network {
    /// Index of the largest of each row's logits.
    static func argmax(_ z: UnsafePointer<Float>, _ n: Int) -> Int {
        var best = 0
        for j in 1..<n where z[j] > z[best] { best = j }
        return best
    }

    /// Loss and confusion matrix over the samples of `source` in `range` (default: all), in inference mode.
    public func evaluate(_ source: BatchSource, range: Range<Int>? = nil, batchSize: Int = 1000) -> Evaluation {
        let buffer = BatchBuffer(capacity: batchSize, inputWidth: spec.inputWidth)
        var confusion = ConfusionMatrix(classes: spec.classes)
        var lossSum = 0.0
        let all = Array(range ?? 0..<source.sampleCount)
        for start in stride(from: 0, to: all.count, by: batchSize) {
            let indices = all[start..<min(start + batchSize, all.count)]
            source.gather(indices, into: buffer.x.base, labels: buffer.labels)
            let logits = forward(buffer.x.base, batch: indices.count, pass: .inference)
            lossSum += spec.loss.evaluate(logits: logits, labels: buffer.labels, batch: indices.count, classes: spec.classes, gradient: nil)
                * Double(indices.count)
            for r in 0..<indices.count {
                confusion.add(truth: Int(buffer.labels[r]), predicted: Network.argmax(logits + r * spec.classes, spec.classes))
            }
        }
        return Evaluation(loss: lossSum / Double(max(all.count, 1)), confusion: confusion)
    }
}

/// Mini-batch training of one network: gradients, clipping, the optimizer and the schedule.
///
/// `computeGradients` and `apply` are separate so that a distributed run can average gradients between them.
public final class Trainer {
    public let network: Network
    public let optimizer: Optimizer
    public let schedule: LearningRateSchedule
    /// Clip the global gradient norm to this value when set.
    public let clipNorm: Float?
    /// Seeds dropout masks (with the step number).
    public let seed: UInt64
    /// Steps applied so far; drives the schedule and the dropout masks.
    public private(set) var step = 0
    /// The rate the last step used.
    public private(set) var learningRate: Float = 0
    private var logitGradient: Workspace

    public init(network: Network, optimizer: OptimizerSettings, schedule: LearningRateSchedule, clipNorm: Float? = nil, seed: UInt64) {
        self.network = network
        self.optimizer = Optimizer(optimizer, parameterCount: network.parameterCount)
        self.schedule = schedule
        self.clipNorm = clipNorm
        self.seed = seed
        logitGradient = Workspace(width: network.spec.classes)
    }

    /// Forward and backward on one batch; leaves the gradient of the mean loss in `network.gradients`.
    /// Returns the mean loss and the number of correctly classified samples.
    /// `step` (default: the trainer's own) and `firstRow` place the batch within a run and within a larger
    /// global batch, for the dropout masks (see `Pass`).
    public func computeGradients(x: UnsafePointer<Float>, labels: UnsafePointer<Int32>, batch: Int, step: Int? = nil, firstRow: Int = 0) -> (loss: Double, correct: Int) {
        let classes = network.spec.classes
        let logits = network.forward(x, batch: batch, pass: .training(seed: seed, step: UInt64(step ?? self.step), firstRow: firstRow))
        let dLogits = logitGradient.rows(batch)
        let loss = network.spec.loss.evaluate(logits: logits, labels: labels, batch: batch, classes: classes, gradient: dLogits)
        var correct = 0
        for r in 0..<batch where Network.argmax(logits + r * classes, classes) == Int(labels[r]) { correct += 1 }
        network.backward(dLogits, batch: batch)
        return (loss, correct)
    }

    /// Clips and applies `network.gradients` with the scheduled learning rate, then advances the step.
    public func apply(stepsPerEpoch: Int, totalSteps: Int) {
        let gradients = network.gradients
        if let clipNorm {
            let norm = Float(BLAS.sumOfSquares(gradients.base, count: gradients.count).squareRoot())
            if norm > clipNorm {
                let scale = clipNorm / norm
                for i in 0..<gradients.count { gradients.base[i] *= scale }
            }
        }
        learningRate = schedule.rate(step: step, stepsPerEpoch: stepsPerEpoch, totalSteps: totalSteps)
        optimizer.step(parameters: network.parameters, gradients: gradients, learningRate: learningRate)
        step += 1
    }

    /// One optimisation step on one batch. A non-finite loss stops training with an error instead of
    /// silently filling the model with NaN.
    public func trainStep(x: UnsafePointer<Float>, labels: UnsafePointer<Int32>, batch: Int, stepsPerEpoch: Int, totalSteps: Int) throws -> (loss: Double, correct: Int) {
        let result = computeGradients(x: x, labels: labels, batch: batch)
        guard result.loss.isFinite else {
            throw TrainingError("training diverged: the loss is \(result.loss) at step \(step + 1); lower the learning rate or clip gradients (--clip)")
        }
        apply(stepsPerEpoch: stepsPerEpoch, totalSteps: totalSteps)
        return result
    }

    /// Running totals of an epoch, handed to a progress callback after every step.
    public struct EpochProgress: Sendable {
        public var samples = 0
        public var totalSamples: Int
        public var lossSum = 0.0
        public var correct = 0
        public var meanLoss: Double { samples == 0 ? 0 : lossSum / Double(samples) }
        public var accuracy: Double { samples == 0 ? 0 : Double(correct) / Double(samples) }
    }

    /// One pass over `order` (sample indices into `source`) in batches of `batchSize`; the last batch may be
    /// smaller. `epochs` sets the schedule's horizon.
    public func trainEpoch(_ source: BatchSource, order: [Int], batchSize: Int, buffer: BatchBuffer, epochs: Int,
                           progress: (EpochProgress) -> Void = { _ in }) throws -> EpochProgress {
        precondition(buffer.capacity >= batchSize)
        let stepsPerEpoch = (order.count + batchSize - 1) / batchSize
        var state = EpochProgress(totalSamples: order.count)
        for start in stride(from: 0, to: order.count, by: batchSize) {
            let indices = order[start..<min(start + batchSize, order.count)]
            source.gather(indices, into: buffer.x.base, labels: buffer.labels)
            let r = try trainStep(x: buffer.x.base, labels: buffer.labels, batch: indices.count,
                                  stepsPerEpoch: stepsPerEpoch, totalSteps: stepsPerEpoch * epochs)
            state.samples += indices.count
            state.lossSum += r.loss * Double(indices.count)
            state.correct += r.correct
            progress(state)
        }
        return state
    }
}

extension Duration {
    /// The duration as floating-point seconds, for rates and reports.
    public var seconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}
