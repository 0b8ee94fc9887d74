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

    init(_ configuration: RingConfiguration, network: Network, host: String, port: Int, keys: CurveKeyPair?, logger: Logger) throws {
        self.configuration = configuration
        replica = ParameterUpdate(network: network, optimizer: configuration.optimizer, schedule: configuration.schedule, clipNorm: configuration.clipNorm)
        // A chunk is at most the whole reduced vector, and a header.
        link = try RingLink(host: host, port: port, keys: keys, maximumChunkBytes: Int64(4 * (network.parameterCount + network.state.count) + 64), logger: logger)
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
}

extension Worker {
    /// A ring step: the slice's gradient at the replica, weighed by the slice's share of the step's samples,
    /// summed with the ring; the owned chunk goes to the coordinator as soon as its sum is complete, then the
    /// replica steps. Returns false when the step was given up (a new generation or a shutdown came meanwhile,
    /// and is handled next).
    func ringStep(_ task: GradientTask, plan: RingPlan, in session: Session) throws -> Bool {
        guard let ring = session.ring else { throw ClusterError("a ring task in a run without a ring") }
        if plan.sync.isEmpty, let current = ring.generation, plan.generation < current {
            // Sent ahead for a ring given up since (generations only grow within a run).
            logger.debug("skipped step \(task.step + 1) of ring generation \(plan.generation), now \(current)")
            return false
        }
        if !plan.sync.isEmpty {
            try ring.start(plan.generation, from: plan.sync)
        } else if ring.generation != plan.generation {
            throw ClusterError("a task of ring generation \(plan.generation) without the replica to start it from (this worker is in \(ring.generation.map(String.init) ?? "none"))")
        }
        guard task.samples.count <= Int(plan.total), plan.total <= UInt32(session.configuration.globalBatch) else {
            throw ClusterError("a ring task of \(task.samples.count) samples of \(plan.total), in steps of \(session.configuration.globalBatch)")
        }
        try ring.link.join(successor: plan.successor, successorKey: plan.successorKey, predecessorKey: plan.predecessorKey)
        var result = try compute(task, in: session)
        // The vector to sum: the gradient, then the state, weighed by this part's share of the step.
        let network = session.backpropagation.network, weight = Float(result.count) / Float(plan.total)
        var vector = [Float](unsafeUninitializedCapacity: network.parameterCount + network.state.count) { out, count in
            BLAS.scale(network.gradients.base, by: weight, into: out.baseAddress!, count: network.parameterCount)
            BLAS.scale(network.state.base, by: weight, into: out.baseAddress! + network.parameterCount, count: network.state.count)
            count = network.parameterCount + network.state.count
        }
        let step = task.step, generation = plan.generation
        do {
            try RingAllReduce.run(&vector, position: Int(plan.position), size: Int(plan.size), send: { phase, values in
                try whileRingWaits(generation: generation, timing: session.timing) {
                    try ring.link.send(generation: generation, step: step, phase: UInt32(phase), values: values, within: .milliseconds(20)) ? () : nil
                }
            }, receive: { phase in
                try whileRingWaits(generation: generation, timing: session.timing) {
                    try ring.link.receive(generation: generation, step: step, phase: UInt32(phase), timeout: .milliseconds(20))?.values
                }
            }, reduced: { chunk in
                result.gradient = Array(chunk)
                result.state = []
                result.generation = generation
                try send(.gradient(result))
            })
        } catch is RingGivenUp {
            return false
        }
        let configuration = ring.configuration
        _ = RingAllReduce.step(ring.replica, reduced: vector, stepsPerEpoch: configuration.stepsPerEpoch, totalSteps: configuration.totalSteps,
                               checked: false)
        return true
    }

    /// Repeats `attempt` (a send to the successor or a receive from the predecessor, each bounded in time) until it
    /// gives a value. Meanwhile (a peer slow or gone) the coordinator keeps hearing from this worker, and what it
    /// says is kept for afterwards; a task of another generation, a shutdown, a refusal or a coordinator that no
    /// longer knows this worker gives the step up, as does a coordinator silent for the timeout.
    private func whileRingWaits<T>(generation: UInt64, timing: ClusterTiming, _ attempt: () throws -> T?) throws -> T {
        var lastHeard = ContinuousClock.now, lastSent = ContinuousClock.now
        while true {
            if let value = try attempt() { return value }
            if ContinuousClock.now - lastSent >= timing.heartbeat {
                try send(.heartbeat(Heartbeat(session: session)))
                lastSent = .now
            }
            while let frames = try transport.receive(timeout: .zero) {
                lastHeard = .now
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
            if settings.stop?.reason != nil || ContinuousClock.now - lastHeard > timing.timeout { throw RingGivenUp() }
        }
    }
}

/// A ring step given up: a new generation, a shutdown or a refusal came, the coordinator forgot this worker, or it
/// went silent.
private struct RingGivenUp: Error {}
