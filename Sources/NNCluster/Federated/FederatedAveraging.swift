import Foundation
import NNCore
import NNData
import NNProtocol

/// The FedAvg family as one strategy: each round samples max(⌈C·K⌉, 1) of the hosted clients without
/// replacement, sends each worker the global model and the ids of its sampled clients, and combines the client
/// models that come back. The combination is the experiment's strategy: the sample-weighted mean (FedAvg,
/// FedProx, whose difference is on the clients), a robust coordinate-wise median or trimmed mean, or the mean
/// followed by a server optimizer step on the pseudo-gradient w_global − mean (FedAvgM: momentum; FedAdam: Adam).
public final class FederatedAveraging: Strategy {
    public let experiment: Experiment
    public let network: Network
    /// Partition size of every client, to check the sample counts clients report.
    public let partitionSizes: [Int]
    private let serverOptimizer: Optimizer?
    private var results: [Int: ClientUpdate] = [:]

    public init(experiment: Experiment, network: Network, partitionSizes: [Int]) throws {
        guard network.spec == experiment.model, partitionSizes.count == experiment.clients else {
            throw ClusterError("the strategy's network or partition does not match the experiment")
        }
        self.experiment = experiment
        self.network = network
        self.partitionSizes = partitionSizes
        let spec = experiment.strategy
        switch spec.kind {
        case .fedavgm:
            serverOptimizer = Optimizer(OptimizerSettings(kind: .momentum, momentum: spec.serverMomentum ?? 0.9), parameterCount: network.parameterCount)
        case .fedadam:
            serverOptimizer = Optimizer(OptimizerSettings(kind: .adam, beta1: spec.beta1 ?? 0.9, beta2: spec.beta2 ?? 0.99, epsilon: spec.tau ?? 1e-3),
                                        parameterCount: network.parameterCount)
        default:
            serverOptimizer = nil
        }
    }

    /// A strategy for `experiment` with the global model initialised from its seed; computes the partition.
    public convenience init(experiment: Experiment, trainingLabels: [UInt8], classes: Int) throws {
        let parts = try experiment.partition.split(labels: trainingLabels, classes: classes, clients: experiment.clients, seed: experiment.seed)
        try self.init(experiment: experiment, network: Network(spec: experiment.model, seed: experiment.seed), partitionSizes: parts.map(\.count))
    }

    public var rounds: Int { experiment.rounds }
    public var clientCount: Int { experiment.clients }
    public var deadline: Duration? { .seconds(experiment.deadlineSeconds) }
    public var minimumResults: Int { experiment.minimumResults }

    /// The clients a round trains: a seeded sample of the hosted ones, the same for every run of the experiment
    /// as long as the same clients are hosted.
    public func sample(round: Int, hosted: [Int]) -> [Int] {
        var pool = hosted
        var rng = SeededRandom(seed: experiment.seed, stream: 0x5341_4D50, UInt64(round))
        let m = min(experiment.clientsPerRound, pool.count)
        for i in 0..<m { pool.swapAt(i, i + rng.next(below: pool.count - i)) }
        return pool.prefix(m).sorted()
    }

    public func configure(round: Int, participants: [Participant]) -> [Assignment] {
        results = [:]
        let hosted = participants.flatMap { Array($0.clients) }.sorted()
        let chosen = Set(sample(round: round, hosted: hosted))
        let parameters = network.parameters.array, state = network.state.array
        let rate = experiment.learningRate(round: round)
        return participants.compactMap { p in
            let mine = p.clients.filter { chosen.contains($0) }
            guard !mine.isEmpty else { return nil }
            let request = TrainRequest(round: UInt64(round), clients: mine.map { UInt32($0) }, learningRate: rate, parameters: parameters, state: state)
            return Assignment(worker: p.peer, keys: mine, message: .train(request))
        }
    }

    /// A client's data lives with its worker: work of a lost worker is not redone elsewhere.
    public func reassign(_ lost: Assignment, keys: [Int], round: Int, participants: [Participant]) -> [Assignment] { [] }

    public func key(of result: Message, round: Int) -> Int? {
        guard case .update(let u) = result, u.round == UInt64(round) else { return nil }
        return Int(u.client)
    }

    public func accept(_ result: Message, key: Int, for assignment: Assignment) throws {
        guard case .update(let u) = result else { throw ClusterError("not a client update") }
        guard Int(u.samples) == partitionSizes[key] else {
            throw ClusterError("client \(key) reports \(u.samples) samples; its partition has \(partitionSizes[key])")
        }
        guard u.parameters.count == network.parameterCount, u.state.count == network.state.count else {
            throw ClusterError("update has \(u.parameters.count) parameters and \(u.state.count) state values; the model has \(network.parameterCount) and \(network.state.count)")
        }
        guard u.lossSum.isFinite, u.parameters.withUnsafeBufferPointer(BLAS.allFinite), u.state.withUnsafeBufferPointer(BLAS.allFinite) else {
            throw ClusterError("update of client \(key) holds NaN or infinite values")
        }
        results[key] = u
    }

    public func aggregate(round: Int) throws -> RoundResult {
        // In client order, whatever order the results arrived in: the same results give the same model.
        let updates = results.sorted { $0.key < $1.key }.map(\.value)
        guard !updates.isEmpty else { throw ClusterError("round \(round + 1) has no client results to aggregate") }
        let total = Double(updates.reduce(0) { $0 + Int($1.samples) })
        let weights = updates.map { Float(Double($0.samples) / total) }
        let count = network.parameterCount
        let combined = network.gradients   // scratch: the new model before any server step
        let spec = experiment.strategy
        updates.map(\.parameters).withUnsafeBuffers { models in
            switch spec.kind {
            case .fedmedian: Aggregation.median(models, count: count, into: combined.base)
            case .fedtrimmedavg: Aggregation.trimmedMean(models, trim: spec.trim ?? 0.2, count: count, into: combined.base)
            default: Aggregation.weightedMean(models, weights: weights, count: count, into: combined.base)
            }
        }
        if network.state.count > 0 {
            updates.map(\.state).withUnsafeBuffers { states in
                Aggregation.weightedMean(states, weights: weights, count: network.state.count, into: network.state.base)
            }
        }
        guard BLAS.allFinite(UnsafeBufferPointer(start: combined.base, count: count)) else {
            throw ClusterError("round \(round + 1): the aggregate of the client models is not finite; training diverged (lower the learning rate, or aggregate with fedmedian or fedtrimmedavg if clients misbehave)")
        }
        let w = network.parameters.base
        if let serverOptimizer {
            // Pseudo-gradient w_global − combined; a server rate of 1 without momentum would give `combined`.
            for i in 0..<count { combined.base[i] = w[i] - combined.base[i] }
            let rate = spec.serverLearningRate ?? (spec.kind == .fedadam ? 0.01 : 1)
            serverOptimizer.step(parameters: network.parameters, gradients: combined, learningRate: rate)
        } else {
            w.update(from: combined.base, count: count)
        }
        var summary = RoundResult()
        for u in updates {
            summary.add(samples: Int(u.samples), lossSum: u.lossSum, correct: Int(u.correct), computeNanoseconds: u.computeNanoseconds)
        }
        return summary
    }
}

/// Coordinate-wise combinations of client vectors.
enum Aggregation {
    /// Σ weights[k] · models[k], summed in the order given.
    static func weightedMean(_ models: [UnsafeBufferPointer<Float>], weights: [Float], count: Int, into out: UnsafeMutablePointer<Float>) {
        out.update(repeating: 0, count: count)
        for (model, weight) in zip(models, weights) {
            let m = model.baseAddress!
            for i in 0..<count { out[i] += weight * m[i] }
        }
    }

    /// The median of each coordinate (the mean of the middle two for an even count); unweighted.
    static func median(_ models: [UnsafeBufferPointer<Float>], count: Int, into out: UnsafeMutablePointer<Float>) {
        let n = models.count
        var column = [Float](repeating: 0, count: n)
        for i in 0..<count {
            for k in 0..<n { column[k] = models[k][i] }
            column.sort()
            out[i] = n % 2 == 1 ? column[n / 2] : (column[n / 2 - 1] + column[n / 2]) / 2
        }
    }

    /// The mean of each coordinate after dropping ⌊trim · n⌋ largest and as many smallest values; unweighted.
    static func trimmedMean(_ models: [UnsafeBufferPointer<Float>], trim: Double, count: Int, into out: UnsafeMutablePointer<Float>) {
        let n = models.count
        let cut = min(Int(trim * Double(n)), (n - 1) / 2)
        let kept = Float(n - 2 * cut)
        var column = [Float](repeating: 0, count: n)
        for i in 0..<count {
            for k in 0..<n { column[k] = models[k][i] }
            column.sort()
            var sum: Float = 0
            for k in cut..<(n - cut) { sum += column[k] }
            out[i] = sum / kept
        }
    }
}

extension Array where Element == [Float] {
    /// Calls `body` with a buffer pointer to each array, all valid at once.
    func withUnsafeBuffers<R>(_ body: ([UnsafeBufferPointer<Float>]) throws -> R) rethrows -> R {
        func nest(_ i: Int, _ acc: [UnsafeBufferPointer<Float>]) throws -> R {
            if i == count { return try body(acc) }
            return try self[i].withUnsafeBufferPointer { try nest(i + 1, acc + [$0]) }
        }
        return try nest(0, [])
    }
}
