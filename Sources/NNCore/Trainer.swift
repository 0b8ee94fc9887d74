/// Mini-batch training of one network in one process: each step is the batch's gradient (on `threads`
/// threads, see `ParallelBackpropagation`) then `ParameterUpdate`.
public final class Trainer {
    public let backpropagation: ParallelBackpropagation
    public let update: ParameterUpdate
    public var network: Network { update.network }
    public var step: Int { update.step }
    public var learningRate: Float { update.learningRate }

    public init(network: Network, optimizer: OptimizerSettings, schedule: LearningRateSchedule, clipNorm: Float? = nil, seed: UInt64,
                threads: Int = 1) {
        backpropagation = ParallelBackpropagation(network: network, threads: threads, seed: seed)
        update = ParameterUpdate(network: network, optimizer: optimizer, schedule: schedule, clipNorm: clipNorm)
    }

    /// One optimisation step on one batch. A non-finite loss stops training with an error instead of
    /// silently filling the model with NaN.
    public func trainStep(x: UnsafePointer<Float>, labels: UnsafePointer<Int32>, batch: Int, stepsPerEpoch: Int, totalSteps: Int) throws -> Backpropagation.Result {
        let result = backpropagation.run(x: x, labels: labels, batch: batch, step: UInt64(step))
        guard result.loss.isFinite else { throw TrainingError.diverged(loss: result.loss, step: step + 1) }
        update.apply(stepsPerEpoch: stepsPerEpoch, totalSteps: totalSteps)
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
