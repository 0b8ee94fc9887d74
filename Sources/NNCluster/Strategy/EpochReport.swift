import NNCore

/// One epoch of training, in one process or by synchronous SGD: its rounds summed, and the test evaluation
/// after it.
public struct EpochReport: Sendable {
    /// From 1.
    public var epoch: Int
    /// The rounds' results summed (compute time too, not its maximum).
    public var result = RoundResult()
    public var seconds = 0.0
    public var communicationSeconds = 0.0
    public var aggregationSeconds = 0.0
    public var bytesSent = 0
    public var bytesReceived = 0
    public var workers = 0
    public var rejectedMessages = 0
    /// The rate of the epoch's last step.
    public var learningRate: Float = 0
    /// On the test set after the epoch; nil when the run has no test set.
    public var evaluation: Evaluation?

    public init(epoch: Int) { self.epoch = epoch }

    public var samplesPerSecond: Double { Double(result.samples) / seconds }

    mutating func add(_ round: RoundReport) {
        result.samples += round.result.samples
        result.lossSum += round.result.lossSum
        result.correct += round.result.correct
        result.computeSeconds += round.result.computeSeconds
        seconds += round.seconds
        communicationSeconds += round.communicationSeconds
        aggregationSeconds += round.aggregationSeconds
        bytesSent += round.bytesSent
        bytesReceived += round.bytesReceived
        workers = round.workers
        rejectedMessages = round.rejectedSoFar
    }
}
