import NNCore
import NNProtocol

/// Everything a worker needs to take part, sent as JSON in the welcome.
public struct RunConfiguration: Codable, Equatable, Sendable {
    public var mode: String
    public var model: ModelSpec
    public var seed: UInt64
    /// Samples per step across all workers.
    public var globalBatch: Int
    public var heartbeatSeconds: Double
    public var timeoutSeconds: Double

    public init(mode: String, model: ModelSpec, seed: UInt64, globalBatch: Int, heartbeatSeconds: Double, timeoutSeconds: Double) {
        self.mode = mode; self.model = model; self.seed = seed; self.globalBatch = globalBatch
        self.heartbeatSeconds = heartbeatSeconds; self.timeoutSeconds = timeoutSeconds
    }
}

/// A piece of a round's work for one worker. `key` tells results apart within the round.
public struct Assignment: Sendable {
    public var worker: PeerID
    public var key: Int
    public var message: Message
}

/// What a round produced, for metrics.
public struct RoundResult: Sendable {
    public var samples = 0
    public var lossSum = 0.0
    public var correct = 0
    /// The slowest worker's compute time in the round.
    public var computeSeconds = 0.0
}

/// How a run trains: which work each round hands out, and how results become the next global model.
/// Synchronous SGD is one strategy; federated ones (FedAvg and its family) are its peers. The coordinator does
/// the bookkeeping (registration, sending, collecting, failures); a strategy never touches a transport.
public protocol Strategy: AnyObject {
    /// The global model, for evaluation and checkpoints.
    var network: Network { get }
    var roundsPerEpoch: Int { get }
    var epochs: Int { get }
    /// The round's work split among `workers` (in registration order; never empty).
    func configure(round: Int, workers: [PeerID]) -> [Assignment]
    /// Work that a lost worker held, handed to the remaining `workers`.
    func reassign(_ lost: Assignment, round: Int, workers: [PeerID]) -> [Assignment]
    /// The key of the assignment a result answers, or nil if it answers none of this round.
    func key(of result: Message, round: Int) -> Int?
    /// Takes a result; throws, and keeps nothing, when it is malformed (wrong shape, non-finite values).
    func accept(_ result: Message, for assignment: Assignment) throws
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

    public func configure(round: Int, workers: [PeerID]) -> [Assignment] {
        results = [:]
        let start = (round % roundsPerEpoch) * globalBatch
        return split(round: round, start: start, count: min(globalBatch, trainingSamples - start), firstRow: 0, among: workers)
    }

    public func reassign(_ lost: Assignment, round: Int, workers: [PeerID]) -> [Assignment] {
        guard case .task(let task) = lost.message else { return [] }
        return split(round: round, start: Int(task.start), count: Int(task.count), firstRow: Int(task.firstRow), among: workers)
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
            assignments.append(Assignment(worker: worker, key: start + offset, message: .task(task)))
            offset += part
        }
        return assignments
    }

    public func key(of result: Message, round: Int) -> Int? {
        guard case .gradient(let g) = result, g.step == UInt64(round) else { return nil }
        return Int(g.start)
    }

    public func accept(_ result: Message, for assignment: Assignment) throws {
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
        results[assignment.key] = g
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
            summary.samples += Int(part.count)
            summary.lossSum += part.lossSum
            summary.correct += Int(part.correct)
            summary.computeSeconds = max(summary.computeSeconds, Double(part.computeNanoseconds) * 1e-9)
        }
        trainer.apply(stepsPerEpoch: roundsPerEpoch, totalSteps: roundsPerEpoch * epochs)
        return summary
    }
}
