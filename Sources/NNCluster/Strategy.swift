import NNCore
import NNProtocol

/// Everything a worker needs to take part, sent as JSON in the welcome.
public struct RunConfiguration: Codable, Equatable, Sendable {
    public var mode: String
    public var model: ModelSpec
    public var seed: UInt64
    /// Samples per step across all workers (synchronous SGD).
    public var globalBatch: Int
    public var heartbeatSeconds: Double
    public var timeoutSeconds: Double
    /// The federated experiment, for federated modes.
    public var experiment: Experiment?

    public init(mode: String, model: ModelSpec, seed: UInt64, globalBatch: Int, heartbeatSeconds: Double, timeoutSeconds: Double,
                experiment: Experiment? = nil) {
        self.mode = mode; self.model = model; self.seed = seed; self.globalBatch = globalBatch
        self.heartbeatSeconds = heartbeatSeconds; self.timeoutSeconds = timeoutSeconds; self.experiment = experiment
    }

    /// The configuration of a federated run of `experiment`.
    public init(experiment: Experiment, heartbeatSeconds: Double, timeoutSeconds: Double) {
        self.init(mode: experiment.strategy.kind.rawValue, model: experiment.model, seed: experiment.seed, globalBatch: 0,
                  heartbeatSeconds: heartbeatSeconds, timeoutSeconds: timeoutSeconds, experiment: experiment)
    }
}

/// A registered worker as a strategy sees it: where to send work, and which federated clients it hosts.
public struct Participant: Sendable {
    public var peer: PeerID
    public var clients: Range<Int>
    public init(peer: PeerID, clients: Range<Int> = 0..<0) { self.peer = peer; self.clients = clients }
}

/// A piece of a round's work for one worker, and the keys of the results it yields (a slice's start, or the
/// ids of the clients it trains); keys tell results apart within a round.
public struct Assignment: Sendable {
    public var worker: PeerID
    public var keys: [Int]
    public var message: Message
}

/// What a round's results add up to, for metrics.
public struct RoundResult: Sendable {
    public var samples = 0
    public var lossSum = 0.0
    public var correct = 0
    /// The slowest result's compute time in the round.
    public var computeSeconds = 0.0
    public var meanLoss: Double { samples == 0 ? 0 : lossSum / Double(samples) }
    public var accuracy: Double { samples == 0 ? 0 : Double(correct) / Double(samples) }

    /// Counts one result in.
    mutating func add(samples: Int, lossSum: Double, correct: Int, computeNanoseconds: UInt64) {
        self.samples += samples
        self.lossSum += lossSum
        self.correct += correct
        computeSeconds = max(computeSeconds, Double(computeNanoseconds) * 1e-9)
    }
}

/// One round as the coordinator (or the simulation) ran it.
public struct RoundReport: Sendable {
    /// From 0.
    public var round: Int
    public var result = RoundResult()
    public var seconds = 0.0
    public var communicationSeconds = 0.0
    public var aggregationSeconds = 0.0
    public var bytesSent = 0
    public var bytesReceived = 0
    /// Live workers at the end of the round.
    public var workers = 0
    /// Results asked for (slices, sampled clients), results used, and the keys of those left out.
    public var expected = 0
    public var answered = 0
    public var missed: [Int] = []
    /// Results that arrived after their round had ended.
    public var late = 0
    /// Fewer results than the strategy's minimum came: nothing was aggregated.
    public var skipped = false

    public init(round: Int) { self.round = round }
}

/// How a run trains: which work each round hands out, and how results become the next global model (Flower's
/// `configure_fit` and `aggregate_fit`). Synchronous SGD and the FedAvg family are peers behind it. The
/// coordinator (or the simulation) does the bookkeeping: registration, sending, collecting, deadlines,
/// failures; a strategy never touches a transport.
public protocol Strategy: AnyObject {
    /// The global model, for evaluation and checkpoints.
    var network: Network { get }
    var rounds: Int { get }
    /// Federated clients the run has (0 when there are none); the coordinator gives each worker a range to host.
    var clientCount: Int { get }
    /// nil: every result is needed and a lost worker's work goes to the others. Set: a round ends at this
    /// deadline at the latest, missing results are left out, and with fewer than `minimumResults` it is skipped.
    var deadline: Duration? { get }
    var minimumResults: Int { get }
    /// The round's work for `participants` (in registration order; never empty).
    func configure(round: Int, participants: [Participant]) -> [Assignment]
    /// Work whose results (`keys` of `lost`) will not come, for the remaining `participants`; empty if it is
    /// not to be redone.
    func reassign(_ lost: Assignment, keys: [Int], round: Int, participants: [Participant]) -> [Assignment]
    /// The key of the result, or nil if it answers nothing of this round.
    func key(of result: Message, round: Int) -> Int?
    /// Takes a result; throws, and keeps nothing, when it is malformed (wrong shape, non-finite values).
    func accept(_ result: Message, key: Int, for assignment: Assignment) throws
    /// Combines the round's results into the global model.
    func aggregate(round: Int) throws -> RoundResult
}

/// Synchronous data-parallel SGD: each step's global batch (a slice of the epoch's seeded order) is split among
/// the workers; each returns the mean gradient of its part; the coordinator takes the sample-weighted mean and
/// applies the optimizer. Equivalent to one process training at the global batch over the same order.
public final class SynchronousSGD: Strategy {
    public let trainer: Trainer
    public var network: Network { trainer.network }
    public let trainingSamples: Int
    public let globalBatch: Int
    public let epochs: Int
    private var results: [Int: GradientResult] = [:]

    public init(trainer: Trainer, trainingSamples: Int, globalBatch: Int, epochs: Int) {
        self.trainer = trainer
        self.trainingSamples = trainingSamples
        self.globalBatch = globalBatch
        self.epochs = epochs
    }

    public var roundsPerEpoch: Int { (trainingSamples + globalBatch - 1) / globalBatch }
    public var rounds: Int { roundsPerEpoch * epochs }
    public var clientCount: Int { 0 }
    public var deadline: Duration? { nil }
    public var minimumResults: Int { 1 }

    public func configure(round: Int, participants: [Participant]) -> [Assignment] {
        results = [:]
        let start = (round % roundsPerEpoch) * globalBatch
        return split(round: round, start: start, count: min(globalBatch, trainingSamples - start), firstRow: 0, among: participants.map(\.peer))
    }

    public func reassign(_ lost: Assignment, keys: [Int], round: Int, participants: [Participant]) -> [Assignment] {
        guard case .task(let task) = lost.message else { return [] }
        return split(round: round, start: Int(task.start), count: Int(task.count), firstRow: Int(task.firstRow), among: participants.map(\.peer))
    }

    /// Contiguous, near-equal parts of `count` positions, the first workers taking one more when it does not divide.
    private func split(round: Int, start: Int, count: Int, firstRow: Int, among workers: [PeerID]) -> [Assignment] {
        let parameters = network.parameters.array, state = network.state.array
        var assignments: [Assignment] = []
        var offset = 0
        for (i, worker) in workers.enumerated() {
            let part = count / workers.count + (i < count % workers.count ? 1 : 0)
            guard part > 0 else { continue }
            let task = Task(step: UInt64(round), epoch: UInt32(round / roundsPerEpoch + 1), start: UInt32(start + offset), count: UInt32(part),
                            firstRow: UInt32(firstRow + offset), parameters: parameters, state: state)
            assignments.append(Assignment(worker: worker, keys: [start + offset], message: .task(task)))
            offset += part
        }
        return assignments
    }

    public func key(of result: Message, round: Int) -> Int? {
        guard case .gradient(let g) = result, g.step == UInt64(round) else { return nil }
        return Int(g.start)
    }

    public func accept(_ result: Message, key: Int, for assignment: Assignment) throws {
        guard case .gradient(let g) = result, case .task(let task) = assignment.message else { throw ClusterError("not a gradient") }
        guard g.count == task.count else { throw ClusterError("gradient covers \(g.count) samples, the task had \(task.count)") }
        guard g.gradient.count == network.parameterCount else {
            throw ClusterError("gradient has \(g.gradient.count) values, the model has \(network.parameterCount) parameters")
        }
        guard g.state.count == network.state.count else {
            throw ClusterError("state has \(g.state.count) values, the model has \(network.state.count)")
        }
        guard g.lossSum.isFinite, g.gradient.withUnsafeBufferPointer(BLAS.allFinite), g.state.withUnsafeBufferPointer(BLAS.allFinite) else {
            throw ClusterError("gradient, state or loss holds NaN or infinite values")
        }
        results[key] = g
    }

    public func aggregate(round: Int) throws -> RoundResult {
        // Summed in slice order, whatever order the results arrived in, so runs are reproducible.
        let parts = results.sorted { $0.key < $1.key }.map(\.value)
        let total = Float(parts.reduce(0) { $0 + Int($1.count) })
        let gradient = network.gradients.base, state = network.state.base
        gradient.update(repeating: 0, count: network.parameterCount)
        if !parts.isEmpty && network.state.count > 0 { state.update(repeating: 0, count: network.state.count) }
        var summary = RoundResult()
        for part in parts {
            let weight = Float(part.count) / total
            part.gradient.withUnsafeBufferPointer { g in for i in 0..<g.count { gradient[i] += weight * g[i] } }
            part.state.withUnsafeBufferPointer { s in for i in 0..<s.count { state[i] += weight * s[i] } }
            summary.add(samples: Int(part.count), lossSum: part.lossSum, correct: Int(part.correct), computeNanoseconds: part.computeNanoseconds)
        }
        trainer.apply(stepsPerEpoch: roundsPerEpoch, totalSteps: roundsPerEpoch * epochs)
        return summary
    }
}

/// The round reports of one epoch of synchronous SGD, summed.
public struct EpochReport: Sendable {
    public var epoch: Int
    /// The rounds' results summed (compute time too, not its maximum).
    public var result = RoundResult()
    public var seconds = 0.0
    public var communicationSeconds = 0.0
    public var aggregationSeconds = 0.0
    public var bytesSent = 0
    public var bytesReceived = 0
    public var workers = 0

    public init(epoch: Int) { self.epoch = epoch }

    public mutating func add(_ round: RoundReport) {
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
    }
}
