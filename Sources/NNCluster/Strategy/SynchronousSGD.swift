import NNCore
import NNProtocol

/// Synchronous data-parallel SGD: each step's global batch (a slice of the epoch's seeded order) is split among
/// the workers, who are sent the sample indices of their part; each returns the mean gradient of its part; the
/// coordinator takes the sample-weighted mean and applies the optimizer. Equivalent to one process training at
/// the global batch over the same order. In a ring (`Topology.ring`) the workers sum the weighted gradients among
/// themselves and each steps a replica; the coordinator's replica steps from the reduced chunks they send it.
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
                compactVectors: Bool = false, topology: Topology = .parameterServer) {
        self.update = update
        self.topology = topology
        self.robust = robust
        self.compactVectors = compactVectors
        self.seed = seed
        self.trainingSamples = trainingSamples
        self.globalBatch = globalBatch
        self.epochs = epochs
    }

    public func save(into state: inout RunState) { update.save(into: &state) }
    public func restore(from state: RunState) throws { try update.restore(from: state) }

    public var roundsPerEpoch: Int { (trainingSamples + globalBatch - 1) / globalBatch }
    public var rounds: Int { roundsPerEpoch * epochs }
    public var job: Job {
        Job(mode: "sync", seed: seed, globalBatch: globalBatch, compactVectors: compactVectors,
            ring: topology == .ring ? RingConfiguration(optimizer: update.optimizer.settings, schedule: update.schedule, clipNorm: update.clipNorm,
                                                        stepsPerEpoch: roundsPerEpoch, totalSteps: rounds) : nil)
    }
    public var restartsRoundOnLoss: Bool { topology == .ring }
    public func isCurrent(_ g: GradientResult) -> Bool { g.generation == ring?.generation }
    public var clientCount: Int { 0 }
    public var deadline: Duration? { nil }
    public var minimumResults: Int { 1 }

    public func configure(round: Int, participants: [Participant]) -> [Assignment<GradientTask>] {
        let epoch = round / roundsPerEpoch + 1
        if order.epoch != epoch { order = (epoch, epochOrder(seed: seed, epoch: epoch, count: trainingSamples).map { UInt32($0) }) }
        let start = (round % roundsPerEpoch) * globalBatch
        let count = min(globalBatch, trainingSamples - start)
        if topology == .ring {
            return ringTasks(round: round, start: start, samples: Array(order.indices[start..<(start + count)]), among: participants)
        }
        return split(round: round, start: start, samples: Array(order.indices[start..<(start + count)]), firstRow: 0,
                     among: participants.map(\.peer))
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
        guard topology == .ring, let ring, round < rounds else { return nil }
        let start = (round % roundsPerEpoch) * globalBatch
        let members = participants.prefix(min(globalBatch, trainingSamples - start)).map(\.peer)
        guard ring.members == members, round > ring.round else { return nil }
        return configure(round: round, participants: participants)
    }

    /// The ring's tasks: each member (one per sample at most) takes its part, as in `split`, and its place in
    /// the ring.
    private func ringTasks(round: Int, start: Int, samples: [UInt32], among participants: [Participant]) -> [Assignment<GradientTask>] {
        let members = Array(participants.prefix(samples.count))
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
        return zip(members.enumerated(), BatchSlices.ranges(count: samples.count, parts: n)).map { position, part in
            let (i, member) = position
            let plan = RingPlan(generation: generation, position: UInt32(i), size: UInt32(n), total: UInt32(samples.count),
                                successor: members[(i + 1) % n].ringEndpoint ?? "", successorKey: members[(i + 1) % n].peer.key?.z85 ?? "",
                                predecessorKey: members[(i + n - 1) % n].peer.key?.z85 ?? "", sync: sync)
            let task = GradientTask(step: UInt64(round), start: UInt32(start + part.lowerBound), firstRow: UInt32(part.lowerBound),
                                    samples: Array(samples[part]), parameters: [], state: [], ring: plan)
            return Assignment(worker: member.peer, keys: [start + part.lowerBound], work: task)
        }
    }

    /// The range of the reduced vector (gradient, then state) that the ring member at `position` sends.
    private func ringChunk(position: Int, size: Int) -> Range<Int> {
        RingAllReduce.bounds(chunk: RingAllReduce.owned(position: position, size: size), size: size,
                             length: network.parameterCount + network.state.count)
    }

    public func check(_ g: GradientResult, against assignment: Assignment<GradientTask>) throws {
        if let plan = assignment.work.ring {
            guard g.generation == plan.generation else { throw ClusterError("result of ring generation \(g.generation.map(String.init) ?? "none"), not \(plan.generation)") }
            guard Int(g.count) == assignment.work.samples.count, g.correct <= g.count else {
                throw ClusterError("result counts \(g.correct) correct of \(g.count) samples; the task had \(assignment.work.samples.count)")
            }
            let chunk = ringChunk(position: Int(plan.position), size: Int(plan.size))
            guard g.gradient.count == chunk.count else { throw ClusterError("reduced chunk has \(g.gradient.count) values, \(chunk.count) expected") }
            // Not checked for finiteness: a ring's chunks are sums over every member, so the step itself refuses them.
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
        if topology == .ring {
            // Results come in key order, which is ring order.
            guard let ring, results.count == ring.members.count else { throw ClusterError("a ring step with \(results.count) of its chunks") }
            var reduced = [Float](repeating: 0, count: network.parameterCount + network.state.count)
            for (position, result) in results.enumerated() {
                reduced.replaceSubrange(ringChunk(position: position, size: results.count), with: result.gradient)
            }
            guard RingAllReduce.step(update, reduced: reduced, stepsPerEpoch: roundsPerEpoch, totalSteps: rounds, checked: true) else {
                throw TrainingError.nonFiniteUpdate(step: round + 1)
            }
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
        guard update.applyIfFinite(stepsPerEpoch: roundsPerEpoch, totalSteps: rounds) else {
            throw TrainingError.nonFiniteUpdate(step: round + 1)
        }
        var result = RoundResult(round: results)
        result.flagged = flagged
        return result
    }
}
