import NNProtocol

/// Work a strategy hands out, typed; the coordinator puts it on the wire.
public protocol Instruction: Sendable {
    var message: Message { get }
}

/// A worker's answer to an instruction, typed; the coordinator decodes it once and files it by round and key.
public protocol WorkResult: Sendable {
    /// The result a message carries, or nil when it carries another kind.
    init?(_ message: Message)
    var round: UInt64 { get }
    /// Names the result within its round: a slice's first position, a client's id.
    var key: Int { get }
    /// Samples, summed loss, correct predictions and compute time, for the round's metrics.
    var tally: RoundResult { get }
    /// With secure aggregation: the masked input, of which only the sum over a round means anything.
    var masked: [UInt32]? { get }
}

extension GradientTask: Instruction {
    public var message: Message { .task(self) }
}

extension TrainRequest: Instruction {
    public var message: Message { .train(self) }
}

extension GradientResult: WorkResult {
    public init?(_ message: Message) {
        guard case .gradient(let g) = message else { return nil }
        self = g
    }
    public var round: UInt64 { step }
    public var key: Int { Int(start) }
    public var masked: [UInt32]? { nil }
    public var tally: RoundResult {
        RoundResult(samples: Int(count), lossSum: lossSum, correct: Int(correct), computeSeconds: Double(computeNanoseconds) * 1e-9)
    }
}

extension ClientUpdate: WorkResult {
    public init?(_ message: Message) {
        guard case .update(let u) = message else { return nil }
        self = u
    }
    public var key: Int { Int(client) }
    public var tally: RoundResult {
        RoundResult(samples: Int(samples), lossSum: lossSum, correct: Int(correct), computeSeconds: Double(computeNanoseconds) * 1e-9)
    }
}
