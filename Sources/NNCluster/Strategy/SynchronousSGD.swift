import NNCore
import NNProtocol

/// Synchronous data-parallel SGD: each step's global batch (a slice of the epoch's seeded order) is split among
/// the workers, who are sent the sample indices of their part; each returns the mean gradient of its part; the
/// coordinator takes the sample-weighted mean and applies the optimizer. Equivalent to one process training at
/// the global batch over the same order. In a ring (`Topology.ring`, `.halvingDoubling`) the workers sum the
/// weighted gradients among themselves and each steps a replica, for rounds of several steps; the coordinator's
/// model is the replica the first member reports at the end of each round, and a round that fails starts again
/// from it.
public final class SynchronousSGD: Strategy {
    public let update: ParameterUpdate
    public var network: Network { update.network }
    public let seed: UInt64
    public let trainingSamples: Int
    public let globalBatch: Int
    public let epochs: Int
    /// nil: the exact sample-weighted mean of the gradients.
    public let robust: RobustGradients?
    /// Parameters go out and gradients come back as bfloat16: half the bytes, 8 significant bits (the optimizer
    /// keeps float32).
    public let compactVectors: Bool
    public let topology: Topology
    /// Steps per round: 1, unless in a ring.
    public let stepsPerRound: Int
    /// A cache of the sample order of the epoch the current step is in.
    private var order: (epoch: Int, indices: [UInt32]) = (0, [])
    /// The ring's generation: its members in ring order, and the latest round configured. Changed members, or
    /// configuring a round again (a redo), start the next generation, whose first tasks carry the replica to
    /// start from.
    private var ring: (generation: UInt64, members: [PeerID], round: Int)?
    /// Generations start at a random number, so that a worker that outlived a coordinator does not take a new
    /// coordinator's generation for its old one.
    private let firstGeneration = UInt64.random(in: 0..<(1 << 62))

    public init(update: ParameterUpdate, seed: UInt64, trainingSamples: Int, globalBatch: Int, epochs: Int, robust: RobustGradients? = nil,
                compactVectors: Bool = false, topology: Topology = .parameterServer, ringSteps: Int = 64) {
        precondition(ringSteps >= 1)
        self.update = update
        self.topology = topology
        stepsPerRound = topology.sumsAmongWorkers ? ringSteps : 1
        self.robust = robust
        self.compactVectors = compactVectors
        self.seed = seed
        self.trainingSamples = trainingSamples
        self.globalBatch = globalBatch
        self.epochs = epochs
    }

    public func save(into state: inout RunState) { update.save(into: &state) }
    public func restore(from state: RunState) throws { try update.restore(from: state) }

    public var stepsPerEpoch: Int { (trainingSamples + globalBatch - 1) / globalBatch }
    public var roundsPerEpoch: Int { (stepsPerEpoch + stepsPerRound - 1) / stepsPerRound }
    public var rounds: Int { roundsPerEpoch * epochs }
    /// The steps `round` covers, counted from the run's first: a round never crosses the end of an epoch.
    public func steps(of round: Int) -> Range<Int> {
        let epochStart = round / roundsPerEpoch * stepsPerEpoch, first = (round % roundsPerEpoch) * stepsPerRound
        return (epochStart + first)..<(epochStart + min(first + stepsPerRound, stepsPerEpoch))
    }
    public var job: Job {
        Job(mode: "sync", seed: seed, globalBatch: globalBatch, compactVectors: compactVectors,
            ring: topology.sumsAmongWorkers ? RingConfiguration(optimizer: update.optimizer.settings, schedule: update.schedule, clipNorm: update.clipNorm,
                                                        stepsPerEpoch: stepsPerEpoch, totalSteps: stepsPerEpoch * epochs) : nil)
    }
    public var restartsRoundOnLoss: Bool { topology.sumsAmongWorkers }
    public func stepCount(ofRound round: Int) -> Int { steps(of: round).count }
    public func isCurrent(_ g: GradientResult) -> Bool { g.generation == ring?.generation }
    public var clientCount: Int { 0 }
    public var deadline: Duration? { nil }
    public var minimumResults: Int { 1 }

    public func configure(round: Int, participants: [Participant]) -> [Assignment<GradientTask>] {
        let epoch = round / roundsPerEpoch + 1
        if order.epoch != epoch { order = (epoch, epochOrder(seed: seed, epoch: epoch, count: trainingSamples).map { UInt32($0) }) }
        let batches = steps(of: round).map { step in samples(ofStep: step) }
        if topology.sumsAmongWorkers { return ringTasks(round: round, batches: batches, among: participants) }
        return split(round: round, start: batches[0].lowerBound, samples: Array(order.indices[batches[0]]), firstRow: 0, among: participants.map(\.peer))
    }

    /// Where `step`'s samples lie in its epoch's order.
    private func samples(ofStep step: Int) -> Range<Int> {
        let start = step % stepsPerEpoch * globalBatch
        return start..<min(start + globalBatch, trainingSamples)
    }

    public func reassign(_ lost: Assignment<GradientTask>, keys: [Int], round: Int, participants: [Participant]) -> [Assignment<GradientTask>] {
        split(round: round, start: Int(lost.work.start), samples: lost.work.samples, firstRow: Int(lost.work.firstRow), among: participants.map(\.peer))
    }

    /// The workers' parts of `samples`, cut by `BatchSlices`.
    private func split(round: Int, start: Int, samples: [UInt32], firstRow: Int, among workers: [PeerID]) -> [Assignment<GradientTask>] {
        let parameters = network.parameters.array, state = network.state.array
        return zip(workers, BatchSlices.ranges(count: samples.count, parts: workers.count)).map { worker, part in
            let task = GradientTask(step: UInt64(round), start: UInt32(start + part.lowerBound), firstRow: UInt32(firstRow + part.lowerBound),
                                    samples: Array(samples[part]), parameters: parameters, state: state, compact: compactVectors)
            return Assignment(worker: worker, keys: [start + part.lowerBound], work: task)
        }
    }

    /// A ring's next tasks go out before the step before is aggregated, unless they start a new generation
    /// (whose replica is the aggregated model).
    public func configureAhead(round: Int, participants: [Participant]) -> [Assignment<GradientTask>]? {
        guard topology.sumsAmongWorkers, let ring, round < rounds else { return nil }
        let members = participants.prefix(samples(ofStep: steps(of: round).upperBound - 1).count).map(\.peer)
        guard ring.members == members, round > ring.round else { return nil }
        return configure(round: round, participants: participants)
    }

    /// The ring's tasks: each member takes its part of every step of the round, as in `split`, and its place in
    /// the ring; a ring has at most as many members as the round's last (smallest) step has samples.
    private func ringTasks(round: Int, batches: [Range<Int>], among participants: [Participant]) -> [Assignment<GradientTask>] {
        let members = Array(participants.prefix(batches.last!.count))
        let peers = members.map(\.peer)
        var sync: [UInt8] = []
        if let ring, ring.members == peers, round > ring.round {
            self.ring!.round = round
        } else {
            ring = ((ring?.generation ?? firstGeneration) &+ 1, peers, round)
            var state = RunState()
            update.save(into: &state)
            sync = (try? state.encoded()) ?? []
        }
        let generation = ring!.generation, n = members.count
        let parts = batches.map { BatchSlices.ranges(count: $0.count, parts: n) }
        let allReduce = RingAllReduce.algorithm(for: topology, size: n)
        return members.enumerated().map { i, member in
            let peers = RingAllReduce.peers(position: i, size: n, allReduce).map {
                RingPeer(position: UInt32($0), endpoint: members[$0].ringEndpoint ?? "", key: members[$0].peer.key?.z85 ?? "")
            }
            let plan = RingPlan(generation: generation, position: UInt32(i), size: UInt32(n), firstStep: UInt64(steps(of: round).lowerBound),
                                totals: batches.map { UInt32($0.count) }, allReduce: allReduce, peers: peers, sync: sync)
            let samples = zip(batches, parts).flatMap { batch, part in order.indices[(batch.lowerBound + part[i].lowerBound)..<(batch.lowerBound + part[i].upperBound)] }
            let start = batches[0].lowerBound + parts[0][i].lowerBound
            let task = GradientTask(step: UInt64(round), start: UInt32(start), firstRow: UInt32(parts[0][i].lowerBound),
                                    samples: samples, parameters: [], state: [], ring: plan)
            return Assignment(worker: member.peer, keys: [start], work: task)
        }
    }

    public func check(_ g: GradientResult, against assignment: Assignment<GradientTask>) throws {
        if let plan = assignment.work.ring {
            guard g.generation == plan.generation else { throw ClusterError("result of ring generation \(g.generation.map(String.init) ?? "none"), not \(plan.generation)") }
            // Fewer samples than the task's when the ring stopped at a step that would leave the model non-finite.
            guard Int(g.count) <= assignment.work.samples.count, g.correct <= g.count else {
                throw ClusterError("result counts \(g.correct) correct of \(g.count) samples; the task had \(assignment.work.samples.count)")
            }
            guard plan.position == 0 else {
                guard g.replica.isEmpty else { throw ClusterError("a replica from ring position \(plan.position); only position 0 sends it") }
                return
            }
            _ = try replica(g.replica, steps: steps(of: Int(assignment.work.step)))
            return
        }
        let count = assignment.work.samples.count
        guard Int(g.count) == count else { throw ClusterError("gradient covers \(g.count) samples, the task had \(count)") }
        guard g.correct <= g.count else { throw ClusterError("gradient claims \(g.correct) correct of \(g.count) samples") }
        guard g.compact == compactVectors else {
            throw ClusterError("gradient comes as \(g.compact ? "bfloat16" : "float32"); this run sends \(compactVectors ? "bfloat16" : "float32")")
        }
        guard g.gradient.count == network.parameterCount else {
            throw ClusterError("gradient has \(g.gradient.count) values, the model has \(network.parameterCount) parameters")
        }
        guard g.state.count == network.state.count else {
            throw ClusterError("state has \(g.state.count) values, the model has \(network.state.count)")
        }
        try NonFiniteResult.check([g.gradient, g.state], lossSum: g.lossSum, what: "gradient")
    }

    public func aggregate(round: Int, results: [GradientResult], failures: [Int]) throws -> RoundResult {
        if topology.sumsAmongWorkers {
            // Results come in key order, which is ring order: position 0's, with the replica, first.
            guard let ring, results.count == ring.members.count else { throw ClusterError("a ring round with \(results.count) of its results") }
            try update.restore(from: try replica(results[0].replica, steps: steps(of: round)))
            // The members stop before a step that would leave the model non-finite, as a parameter server does.
            guard update.step == steps(of: round).upperBound else { throw TrainingError.nonFiniteUpdate(step: update.step + 1) }
            return RoundResult(round: results)
        }
        let total = Float(results.reduce(0) { $0 + Int($1.count) })
        let weights = results.map { Float($0.count) / total }
        var flagged: [Int] = []
        if let robust {
            flagged = robust.combine(results.map(\.gradient), weights: weights, count: network.parameterCount, into: network.gradients.base)
                .map { results[$0].key }
        } else {
            BLAS.weightedSum(results.map(\.gradient), weights: weights, into: network.gradients.base, count: network.parameterCount)
        }
        if network.state.count > 0 {
            BLAS.weightedSum(results.map(\.state), weights: weights, into: network.state.base, count: network.state.count)
        }
        guard update.applyIfFinite(stepsPerEpoch: stepsPerEpoch, totalSteps: stepsPerEpoch * epochs) else {
            throw TrainingError.nonFiniteUpdate(step: round + 1)
        }
        var result = RoundResult(round: results)
        result.flagged = flagged
        return result
    }

    /// A ring member's replica after a round of `steps`, checked on a model of its own: it fits, is finite, and has
    /// taken the round's steps (fewer when the ring stopped before a step that would leave it non-finite).
    private func replica(_ bytes: [UInt8], steps: Range<Int>) throws -> RunState {
        let state: RunState, check = ParameterUpdate(network: Network(spec: network.spec), optimizer: update.optimizer.settings,
                                                       schedule: update.schedule, clipNorm: update.clipNorm)
        do {
            state = try RunState(decoding: bytes)
            try check.restore(from: state)
        } catch {
            throw ClusterError("the ring's replica is not usable: \(error)")
        }
        guard (steps.lowerBound...steps.upperBound).contains(check.step) else {
            throw ClusterError("the ring's replica has taken \(check.step) steps, not \(steps.lowerBound)…\(steps.upperBound)")
        }
        try NonFiniteResult.check([check.network.parameters.array, check.network.state.array], lossSum: 0, what: "replica")
        return state
    }
}
