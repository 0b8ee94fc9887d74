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

    init(_ configuration: RingConfiguration, network: Network, host: String, keys: CurveKeyPair?, logger: Logger) throws {
        self.configuration = configuration
        replica = ParameterUpdate(network: network, optimizer: configuration.optimizer, schedule: configuration.schedule, clipNorm: configuration.clipNorm)
        // A chunk is at most the whole reduced vector, and a header.
        link = try RingLink(host: host, keys: keys, maximumChunkBytes: Int64(4 * (network.parameterCount + network.state.count) + 64), logger: logger)
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
        let weight = Float(result.count) / Float(plan.total)
        var vector = (result.gradient + result.state).map { $0 * weight }
        let step = task.step, generation = plan.generation
        let completed = try RingAllReduce.run(&vector, position: Int(plan.position), size: Int(plan.size), send: { phase, values in
            try ring.link.send(RingChunk(generation: generation, step: step, phase: UInt32(phase), values: Array(values)))
        }, receive: { phase in
            try awaitChunk(ring, generation: generation, step: step, phase: UInt32(phase), timing: session.timing)
        }, reduced: { chunk in
            result.gradient = Array(chunk)
            result.state = []
            result.generation = generation
            try send(.gradient(result))
        })
        guard completed else { return false }
        let configuration = ring.configuration
        _ = RingAllReduce.step(ring.replica, reduced: vector, stepsPerEpoch: configuration.stepsPerEpoch, totalSteps: configuration.totalSteps,
                               checked: false)
        return true
    }

    /// The predecessor's chunk for `phase`. While it is late (a peer slow or gone), the coordinator keeps
    /// hearing from this worker, and what it says is kept for afterwards; a task of another generation or a
    /// shutdown gives the step up (nil), as does a coordinator silent for the timeout.
    private func awaitChunk(_ ring: RingMember, generation: UInt64, step: UInt64, phase: UInt32, timing: ClusterTiming) throws -> [Float]? {
        var lastHeard = ContinuousClock.now, lastSent = ContinuousClock.now
        while true {
            if let chunk = try ring.link.receive(generation: generation, step: step, phase: phase, timeout: .milliseconds(20)) { return chunk.values }
            if ContinuousClock.now - lastSent >= timing.heartbeat {
                try send(.heartbeat(Heartbeat(session: session)))
                lastSent = .now
            }
            while let frames = try transport.receive(timeout: .zero) {
                deferred.append(frames)
                lastHeard = .now
                switch try? WireCodec.decode(frames) {
                case .task(let next)? where next.ring?.generation != generation: return nil
                case .shutdown?: return nil
                default: continue
                }
            }
            if settings.stop?.reason != nil || ContinuousClock.now - lastHeard > timing.timeout { return nil }
        }
    }
}
