import Logging
import NNCore
import NNProtocol

/// A worker's part in a ring run: its links to the ring, and its replica of the model with the optimizer,
/// started from the coordinator's replica at each generation and stepped as the coordinator steps its own.
final class RingMember {
    let link: RingLink
    let replica: ParameterUpdate
    let configuration: RingConfiguration
    /// The generation the replica belongs to; nil until the first.
    private(set) var generation: UInt64?

    init(_ configuration: RingConfiguration, network: Network, host: String, port: Int, keys: CurveKeyPair?, spin: Duration, logger: Logger) throws {
        self.configuration = configuration
        replica = ParameterUpdate(network: network, optimizer: configuration.optimizer, schedule: configuration.schedule, clipNorm: configuration.clipNorm)
        // A chunk is at most the whole reduced vector, and a header.
        link = try RingLink(host: host, port: port, keys: keys, maximumChunkBytes: Int64(4 * (network.parameterCount + network.state.count) + 64),
                            spin: spin, logger: logger)
    }

    /// Starts `generation` from the coordinator's replica (a run state's bytes).
    func start(_ generation: UInt64, from bytes: [UInt8]) throws {
        do {
            try replica.restore(from: try RunState(decoding: bytes))
        } catch {
            throw ClusterError("the ring's starting replica is not usable: \(error)")
        }
        self.generation = generation
        link.forget(except: generation)
    }

    /// The task's steps, each as the task of this member's slice of it: the samples come one step's part after
    /// the other, each part as `BatchSlices` cuts the step's total among the ring.
    func slices(of task: GradientTask, plan: RingPlan, globalBatch: Int) throws -> [GradientTask] {
        var slices: [GradientTask] = [], offset = 0
        guard globalBatch <= Int(UInt32.max) else { throw ClusterError("a ring task in steps of \(globalBatch)") }
        guard task.firstRow <= task.start else { throw ClusterError("a ring task from row \(task.firstRow) of a step that starts at sample \(task.start)") }
        let first = Int(task.start - task.firstRow)
        for (i, total) in plan.totals.enumerated() {
            guard total >= plan.size, total <= UInt32(globalBatch) else {
                throw ClusterError("a ring step of \(total) samples, among \(plan.size) members in steps of \(globalBatch)")
            }
            let part = BatchSlices.ranges(count: Int(total), parts: Int(plan.size))[Int(plan.position)]
            guard offset + part.count <= task.samples.count, let start = UInt32(exactly: first + i * globalBatch + part.lowerBound) else {
                throw ClusterError("a ring task of \(task.samples.count) samples, fewer than its \(plan.totals.count) steps' parts")
            }
            slices.append(GradientTask(step: plan.firstStep + UInt64(i), start: start, firstRow: UInt32(part.lowerBound),
                                       samples: Array(task.samples[offset..<(offset + part.count)]), parameters: [], state: [], ring: plan))
            offset += part.count
        }
        guard offset == task.samples.count else {
            throw ClusterError("a ring task of \(task.samples.count) samples; its \(plan.totals.count) steps' parts have \(offset)")
        }
        return slices
    }
}

extension Worker {
    /// A ring round: for each of the task's steps, the step's slice's gradient at the replica, weighed by the
    /// slice's share of the step's samples, summed with the ring, and the replica's step. Then the counts go to
    /// the coordinator, with the replica from the member at position 0. A step that would leave the replica
    /// non-finite ends the round before it, on every member alike (their sums are the same). Returns false when
    /// the round was given up (a new generation or a shutdown came meanwhile, and is handled next).
    func ringStep(_ task: GradientTask, plan: RingPlan, in session: Session) throws -> Bool {
        guard let ring = session.ring else { throw ClusterError("a ring task in a run without a ring") }
        if plan.sync.isEmpty, let current = ring.generation, plan.generation < current {
            // Sent ahead for a ring given up since (generations only grow within a run).
            logger.debug("skipped steps from \(plan.firstStep + 1) of ring generation \(plan.generation), now \(current)")
            return false
        }
        if !plan.sync.isEmpty {
            try ring.start(plan.generation, from: plan.sync)
        } else if ring.generation != plan.generation {
            throw ClusterError("a task of ring generation \(plan.generation) without the replica to start it from (this worker is in \(ring.generation.map(String.init) ?? "none"))")
        }
        let slices = try ring.slices(of: task, plan: plan, globalBatch: session.configuration.globalBatch)
        let position = Int(plan.position), size = Int(plan.size)
        let exchanges = RingAllReduce.exchanges(position: position, size: size, plan.allReduce)
        func peer(_ position: Int) throws -> RingPeer {
            guard let peer = plan.peers.first(where: { $0.position == position }) else {
                throw ClusterError("the ring task names no member at position \(position), which position \(plan.position) exchanges with")
            }
            return peer
        }
        let endpoints = try Dictionary(uniqueKeysWithValues: RingAllReduce.peers(of: exchanges).map { ($0, try peer($0).endpoint) })
        try ring.link.join(sendingTo: Set(exchanges.map(\.to)).map(peer), receivingFrom: Set(exchanges.map(\.from)).map(peer))
        if !plan.sync.isEmpty {
            logger.info("ring generation \(plan.generation): position \(position) of \(size), summing by \(plan.allReduce) with \(endpoints.keys.sorted().map { endpoints[$0]! })")
        }
        let network = session.backpropagation.network, generation = plan.generation, configuration = ring.configuration
        var tally = GradientResult(step: task.step, start: task.start, count: 0, correct: 0, lossSum: 0, computeNanoseconds: 0, gradient: [], state: [],
                                   generation: generation)
        var lastSent = ContinuousClock.now
        for (i, slice) in slices.enumerated() {
            if i > 0 {
                // Between steps, as while waiting: a new ring, a shutdown or a stop ends the round now, not after it.
                do { _ = try readWhileRing(generation: generation) } catch is RingGivenUp { return false }
                if settings.stop?.reason != nil { return false }
            }
            let result = try compute(slice, in: session)
            // The vector to sum: the gradient, then the state, weighed by this part's share of the step.
            let weight = Float(result.count) / Float(plan.totals[i])
            var vector = [Float](unsafeUninitializedCapacity: network.parameterCount + network.state.count) { out, count in
                BLAS.scale(network.gradients.base, by: weight, into: out.baseAddress!, count: network.parameterCount)
                BLAS.scale(network.state.base, by: weight, into: out.baseAddress! + network.parameterCount, count: network.state.count)
                count = network.parameterCount + network.state.count
            }
            let step = slice.step
            do {
                try RingAllReduce.run(&vector, size: size, exchanges: exchanges, send: { phase, to, values in
                    try whileRingWaits(generation: generation, timing: session.timing) {
                        try ring.link.send(to: endpoints[to]!, generation: generation, step: step, phase: UInt32(phase), values: values, within: .milliseconds(20)) ? () : nil
                    }
                }, receive: { phase, consume in
                    try whileRingWaits(generation: generation, timing: session.timing) {
                        try ring.link.receive(generation: generation, step: step, phase: UInt32(phase), timeout: .milliseconds(20), consume)
                    }
                })
            } catch is RingGivenUp {
                return false
            }
            guard RingAllReduce.step(ring.replica, reduced: vector, stepsPerEpoch: configuration.stepsPerEpoch, totalSteps: configuration.totalSteps) else {
                logger.warning("step \(step + 1) would leave the model non-finite; the ring stops before it")
                break
            }
            tally.count += result.count
            tally.correct += result.correct
            tally.lossSum += result.lossSum
            tally.computeNanoseconds += result.computeNanoseconds
            // A long round: the coordinator keeps hearing from this worker.
            if ContinuousClock.now - lastSent >= session.timing.heartbeat {
                try send(.heartbeat(Heartbeat(session: self.session)))
                lastSent = .now
            }
        }
        if plan.position == 0 {
            var state = RunState()
            ring.replica.save(into: &state)
            tally.replica = try state.encoded()
        }
        try send(.gradient(tally))
        return true
    }

    /// Repeats `attempt` (a send to a peer or a receive from one, each bounded in time) until it
    /// gives a value. Meanwhile (a peer slow or gone) the coordinator keeps hearing from this worker and is read
    /// (`readWhileRing`); a stop or a coordinator silent for the timeout gives the step up.
    private func whileRingWaits<T>(generation: UInt64, timing: ClusterTiming, _ attempt: () throws -> T?) throws -> T {
        var lastHeard = ContinuousClock.now, lastSent = ContinuousClock.now
        while true {
            if let value = try attempt() { return value }
            if ContinuousClock.now - lastSent >= timing.heartbeat {
                try send(.heartbeat(Heartbeat(session: session)))
                lastSent = .now
            }
            if try readWhileRing(generation: generation) { lastHeard = .now }
            if settings.stop?.reason != nil || ContinuousClock.now - lastHeard > timing.timeout { throw RingGivenUp() }
        }
    }

    /// Reads what the coordinator has said during a ring round, keeping it for afterwards; a task of another
    /// generation, a shutdown, a refusal or a coordinator that no longer knows this worker gives the round up.
    /// Returns whether anything came.
    private func readWhileRing(generation: UInt64) throws -> Bool {
        var heard = false
        while let frames = try transport.receive(timeout: .zero) {
            heard = true
            switch try? WireCodec.decode(frames) {
            case .task(let next)? where next.ring.map({ $0.generation != generation }) ?? true:
                // A new ring: what was sent ahead for this one will not be done.
                deferred.removeAll { frames in
                    guard case .task(let old)? = try? WireCodec.decode(frames), let plan = old.ring else { return false }
                    return plan.generation == generation
                }
                deferred.append(frames)
                throw RingGivenUp()
            case .shutdown?, .refuse?:
                deferred.append(frames)
                throw RingGivenUp()
            case .error(let report)? where report.code == .notRegistered:
                // A new coordinator (resumed, restarted) that does not know this worker, which registers again
                // next; waiting on would have it ignore the worker's heartbeats as a stranger's.
                deferred.append(frames)
                throw RingGivenUp()
            default:
                deferred.append(frames)
            }
        }
        return heard
    }
}

/// A ring step given up: a new generation, a shutdown or a refusal came, the coordinator forgot this worker, or it
/// went silent.
private struct RingGivenUp: Error {}
