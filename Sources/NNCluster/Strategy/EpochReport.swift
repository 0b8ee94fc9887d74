import NNCore

/// One epoch of training, in one process or by synchronous SGD: its rounds summed, and the test evaluation
/// after it.
public struct EpochReport: Codable, Sendable {
    /// From 1.
    public var epoch: Int
    /// The epoch's rounds added up: samples, losses, times (compute time too, not its maximum) and bytes; workers
    /// and rejected messages as at its last round.
    public var total = RoundReport(round: 0)
    /// The rate of the epoch's last step.
    public var learningRate: Float = 0
    /// On the test set after the epoch; nil when the run has no test set.
    public var evaluation: Evaluation?

    public init(epoch: Int) { self.epoch = epoch }

    public var samplesPerSecond: Double { Double(total.result.samples) / total.seconds }

    mutating func add(_ round: RoundReport) {
        total.result.samples += round.result.samples
        total.result.lossSum += round.result.lossSum
        total.result.correct += round.result.correct
        total.result.computeSeconds += round.result.computeSeconds
        total.result.computeSecondsSummed += round.result.computeSecondsSummed
        total.seconds += round.seconds
        total.communicationSeconds += round.communicationSeconds
        total.aggregationSeconds += round.aggregationSeconds
        total.bytesSent += round.bytesSent
        total.bytesReceived += round.bytesReceived
        total.workers = round.workers
        total.rejectedSoFar = round.rejectedSoFar
    }
}
