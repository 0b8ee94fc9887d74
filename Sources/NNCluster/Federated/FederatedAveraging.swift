import Foundation
import NNCore
import NNData
import NNProtocol

/// The FedAvg family as one strategy: each round samples max(⌈C·K⌉, 1) of the hosted clients without
/// replacement and sends each worker the global model, the round's learning rate and, for each of its sampled
/// clients, the order in which each local epoch visits the client's partition; the client models that come
/// back are combined by the experiment's aggregation rule, followed by its server optimizer step if it has one
/// (both chosen once, from the experiment, by `StrategySpec.components`).
public final class FederatedAveraging: Strategy {
    public let experiment: Experiment
    public let network: Network
    /// Every client's partition: indices into the training set.
    public let partitions: [[Int]]
    private let rule: AggregationRule
    private let server: ServerOptimizer?
    /// With differential privacy: the clipped, noised sum in place of `rule`, and ε per round count.
    private let mechanism: GaussianMechanism?
    public let accountant: RDPAccountant?
    /// S now: fixed, or moved each round by adaptive clipping.
    public private(set) var clip: Float
    /// The aggregate, before any server step.
    private let aggregate: FloatBuffer

    public init(experiment: Experiment, network: Network, partitions: [[Int]]) throws {
        guard network.spec == experiment.model, partitions.count == experiment.clients else {
            throw ClusterError("the strategy's network or partition does not match the experiment")
        }
        self.experiment = experiment
        self.network = network
        self.partitions = partitions
        (rule, server) = experiment.strategy.components(parameterCount: network.parameterCount)
        aggregate = FloatBuffer(count: network.parameterCount)
        mechanism = experiment.privacy.map {
            GaussianMechanism(noiseMultiplier: $0.updateNoiseMultiplier(expectedClients: experiment.expectedClientsPerRound),
                              denominator: experiment.expectedClientsPerRound)
        }
        clip = experiment.privacy?.clip ?? 0
        accountant = experiment.privacy.map { $0.accountant(samplingRate: experiment.fraction) }
    }

    /// A strategy for `experiment` with the global model initialised from its seed; computes the partition.
    public convenience init(experiment: Experiment, trainingLabels: [UInt8], classes: Int) throws {
        let partitions = try experiment.partition.split(labels: trainingLabels, classes: classes, clients: experiment.clients, seed: experiment.seed)
        try self.init(experiment: experiment, network: Network(spec: experiment.model, seed: experiment.seed), partitions: partitions)
    }

    public func save(into state: inout RunState) {
        state.set(network, as: "model")
        server?.optimizer.save(into: &state, as: "server")
        if experiment.privacy != nil { state.vectors["privacy.clip"] = [clip] }
    }

    public func restore(from state: RunState) throws {
        try state.restore(network, from: "model")
        try server?.optimizer.restore(from: state, as: "server")
        if experiment.privacy != nil {
            let saved = try state.vector("privacy.clip", count: 1)[0]
            guard saved > 0 && saved.isFinite else { throw ClusterError("the run state's clipping norm \(saved) is not a positive number") }
            clip = saved
        }
    }

    public var rounds: Int { experiment.rounds }
    public var job: Job { Job(mode: experiment.strategy.kind.rawValue, seed: experiment.seed, globalBatch: 0, experiment: experiment) }
    public var clientCount: Int { experiment.clients }
    public var deadline: Duration? { .seconds(experiment.deadlineSeconds) }
    public var minimumResults: Int { experiment.minimumResults }

    /// The clients a round trains: a seeded sample of the hosted ones, the same for every run of the experiment
    /// as long as the same clients are hosted; with Poisson sampling for privacy, each hosted client with
    /// probability C.
    public func sample(round: Int, hosted: [Int]) -> [Int] {
        if let privacy = experiment.privacy, privacy.sampling == .poisson {
            // Secret unless the experiment fixes the noise seed: amplification by sampling assumes nobody knows who took part.
            var random = PrivacyRandom(seed: privacy.noiseSeed, round: round, purpose: 0x5341_4D50, words: hosted.count)
            return hosted.filter { _ in random.uniform() < experiment.fraction }
        }
        var pool = hosted
        var rng = SeededRandom(seed: experiment.seed, stream: 0x5341_4D50, UInt64(round))
        let m = min(experiment.clientsPerRound, pool.count)
        for i in 0..<m { pool.swapAt(i, i + rng.next(below: pool.count - i)) }
        return pool.prefix(m).sorted()
    }

    /// The client's E local epoch orders in `round`, one after the other: its partition reshuffled in place
    /// before each epoch by a generator of (seed, round, client), so a client trains the same wherever it runs.
    public func localOrder(client: Int, round: Int) -> [UInt32] {
        var order = partitions[client]
        var rng = SeededRandom(seed: experiment.seed, stream: 0x4C4F_4341, UInt64(round), UInt64(client))
        var all: [UInt32] = []
        all.reserveCapacity(order.count * experiment.localEpochs)
        for _ in 0..<experiment.localEpochs {
            rng.shuffle(&order)
            all += order.lazy.map { UInt32($0) }
        }
        return all
    }

    public func configure(round: Int, participants: [Participant]) -> [Assignment<TrainRequest>] {
        let hosted = participants.flatMap { Array($0.clients) }.sorted()
        let chosen = Set(sample(round: round, hosted: hosted))
        let parameters = network.parameters.array, state = network.state.array
        return participants.compactMap { p in
            let mine = p.clients.filter { chosen.contains($0) }
            guard !mine.isEmpty else { return nil }
            let request = TrainRequest(round: UInt64(round), learningRate: experiment.learningRate(round: round),
                                       localEpochs: UInt32(experiment.localEpochs), localBatch: UInt32(experiment.localBatch ?? 0),
                                       proximalMu: experiment.strategy.proximalMu,
                                       clients: mine.map { ClientWork(client: UInt32($0), order: localOrder(client: $0, round: round)) },
                                       parameters: parameters, state: state)
            return Assignment(worker: p.peer, keys: mine, work: request)
        }
    }

    /// A client's data lives with its worker: work of a lost worker is not redone elsewhere.
    public func reassign(_ lost: Assignment<TrainRequest>, keys: [Int], round: Int, participants: [Participant]) -> [Assignment<TrainRequest>] { [] }

    /// A client's weight in a masked sum is its samples ÷ this, the mean partition size, so weighted changes stay
    /// near the range.
    private var weightUnit: Int { max(1, partitions.reduce(0) { $0 + $1.count } / max(partitions.count, 1)) }

    public func maskingServer(round: Int, clients: [Int]) -> MaskingServer? {
        experiment.secureAggregation.map {
            MaskingServer(round: UInt64(round), spec: $0, clients: clients, weightUnit: weightUnit, clip: experiment.privacy == nil ? 0 : clip)
        }
    }

    /// With `hostAggregation` a worker's one update stands for all of its sampled clients.
    public func keys(answeredBy result: ClientUpdate, of assignment: Assignment<TrainRequest>) -> [Int] {
        experiment.hostAggregation ? assignment.keys : [result.key]
    }

    public func check(_ u: ClientUpdate, against assignment: Assignment<TrainRequest>) throws {
        let client = Int(u.client)
        let covered = keys(answeredBy: u, of: assignment)
        guard client == covered[0] else {
            throw ClusterError("a host's update is named by its first sampled client, \(covered[0]), not \(client)")
        }
        let samples = covered.reduce(0) { $0 + partitions[$1].count }
        guard Int(u.samples) == samples else {
            let who = covered.count == 1 ? "client \(client) reports" : "the update of clients \(covered.map(String.init).joined(separator: ", ")) reports"
            throw ClusterError("\(who) \(u.samples) samples; \(covered.count == 1 ? "its partition has" : "their partitions have") \(samples)")
        }
        guard u.correct <= u.samples else { throw ClusterError("client \(client) claims \(u.correct) correct of \(u.samples) samples") }
        guard (u.masked != nil) == (experiment.secureAggregation != nil) else {
            throw ClusterError("update of client \(client) is \(u.masked == nil ? "not " : "")masked; this run \(experiment.secureAggregation == nil ? "does not mask" : "masks every update")")
        }
        if let masked = u.masked {
            guard u.parameters.isEmpty, u.compressed == nil, masked.count == network.parameterCount + 2, u.state.count == network.state.count else {
                throw ClusterError("masked update of client \(client) has \(masked.count) values; the model's \(network.parameterCount) parameters take \(network.parameterCount + 2)")
            }
            try NonFiniteResult.check([u.state], lossSum: u.lossSum, what: "update of client \(client)")
            return
        }
        if let compressed = u.compressed {
            guard u.parameters.isEmpty, compressed.count == network.parameterCount, u.state.count == network.state.count else {
                throw ClusterError("compressed update stands for \(compressed.count) parameters and has \(u.state.count) state values; the model has \(network.parameterCount) and \(network.state.count)")
            }
            try NonFiniteResult.check([compressed.decoded, u.state], lossSum: u.lossSum, what: "update of client \(client)")
            return
        }
        guard u.parameters.count == network.parameterCount, u.state.count == network.state.count else {
            throw ClusterError("update has \(u.parameters.count) parameters and \(u.state.count) state values; the model has \(network.parameterCount) and \(network.state.count)")
        }
        try NonFiniteResult.check([u.parameters, u.state], lossSum: u.lossSum, what: "update of client \(client)")
    }

    public func aggregate(round: Int, results updates: [ClientUpdate], failures: [Int]) throws -> RoundResult {
        guard !updates.isEmpty else { throw ClusterError("round \(round + 1) has no client results to aggregate") }
        let weights = updates.sampleWeights
        let count = network.parameterCount
        // A compressed update is the change from the global model the round started with.
        let global = updates.contains { $0.compressed != nil } ? network.parameters.array : []
        let models = updates.map { u in u.compressed.map { zip(global, $0.decoded).map(+) } ?? u.parameters }
        var privacy: PrivacyTally?
        if let mechanism, let accountant, let spec = experiment.privacy {
            var noise = PrivacyRandom(seed: spec.noiseSeed, round: round, purpose: 0x4E4F_4953, words: count + 3)
            let used = clip
            let (clipped, norms) = mechanism.aggregate(global: network.parameters.base, models: models, count: count,
                                                       clip: used, noise: &noise, into: aggregate.base)
            privacy = adapt(round: round, clipped: clipped, updates: updates.count, used: used, noise: &noise, spec: spec, accountant: accountant)
            privacy?.medianNorm = norms.sorted()[norms.count / 2]
        } else {
            rule.combine(models, weights: weights, count: count, into: aggregate.base)
        }
        if network.state.count > 0 {
            BLAS.weightedSum(updates.map(\.state), weights: weights, into: network.state.base, count: network.state.count)
        }
        var result = RoundResult(round: updates)
        result.privacy = privacy
        try step(round: round)
        return result
    }

    /// Adaptive clipping's step from the round's clipped count, and the round's tally.
    private func adapt(round: Int, clipped: Int, updates: Int, used: Float, noise: inout PrivacyRandom, spec: PrivacySpec,
                       accountant: RDPAccountant) -> PrivacyTally {
        if let adaptive = spec.adaptiveClip, let sigmaB = spec.countNoise(expectedClients: experiment.expectedClientsPerRound) {
            let within = Double(updates - clipped) + sigmaB * noise.gaussian()
            let fraction = within / experiment.expectedClientsPerRound
            clip = used * Float(exp(-adaptive.learningRate * (fraction - adaptive.targetQuantile)))
        }
        return PrivacyTally(clipped: clipped, updates: updates, medianNorm: nil, clip: Double(used),
                            epsilon: accountant.epsilon(rounds: round + 1, delta: spec.delta).epsilon)
    }

    /// With secure aggregation: the next global model from the unmasked sum of the survivors' inputs.
    public func aggregate(round: Int, results updates: [ClientUpdate], failures: [Int], sum: [UInt32], from server: MaskingServer) throws -> RoundResult {
        guard let spec = experiment.secureAggregation, let roster = server.roster, !updates.isEmpty, sum.count == network.parameterCount + 2 else {
            throw ClusterError("round \(round + 1): a masked sum of \(sum.count) values for \(updates.count) updates does not fit this run")
        }
        let count = network.parameterCount
        var (change, clamped, clipped) = FixedPoint(roster: roster, spec: spec).decode(sum)
        let global = network.parameters.base
        var result = RoundResult(round: updates)
        if let mechanism, let accountant, let privacy = experiment.privacy {
            var noise = PrivacyRandom(seed: privacy.noiseSeed, round: round, purpose: 0x4E4F_4953, words: count + 3)
            mechanism.finish(sum: &change, global: global, clip: roster.clip, noise: &noise, into: aggregate.base)
            result.privacy = adapt(round: round, clipped: clipped, updates: updates.count, used: roster.clip, noise: &noise, spec: privacy, accountant: accountant)
        } else {
            let weight = updates.reduce(0.0) { $0 + Double($1.samples) / Double(roster.weightUnit) }
            for j in 0..<count { aggregate.base[j] = global[j] + Float(change[j] / weight) }
        }
        result.masking = MaskingTally(masked: server.maskers.count, dropped: server.maskers.count - server.survivors.count, clamped: clamped)
        try step(round: round)
        return result
    }

    /// Checks the aggregate and makes it the global model, through the server optimizer if there is one.
    private func step(round: Int) throws {
        let count = network.parameterCount
        guard BLAS.allFinite(UnsafeBufferPointer(start: aggregate.base, count: count)) else {
            throw ClusterError("round \(round + 1): the aggregate of the client models is not finite; training diverged (lower the learning rate, or aggregate with fedmedian or fedtrimmedavg if clients misbehave)")
        }
        if let server {
            server.step(global: network.parameters, aggregate: aggregate)
        } else {
            network.parameters.base.update(from: aggregate.base, count: count)
        }
    }
}
