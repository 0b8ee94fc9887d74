import Foundation
import NNCore
import NNProtocol

/// Everything a worker needs to take part, sent as JSON in the welcome. The coordinator builds it, from its
/// strategy's `job` and its own timing, and nothing else does.
public struct RunConfiguration: Codable, Equatable, Sendable {
    public var mode: String
    public var model: ModelSpec
    public var seed: UInt64
    /// Samples per step across all workers (synchronous SGD); 0 in federated runs.
    public var globalBatch: Int
    public var heartbeatSeconds: Double
    public var timeoutSeconds: Double
    /// The federated experiment, for federated modes.
    public var experiment: Experiment?
    /// Synchronous SGD in a ring: how each worker steps its replica.
    public var ring: RingConfiguration?

    init(job: Job, model: ModelSpec, timing: ClusterTiming) {
        mode = job.mode; self.model = model; seed = job.seed; globalBatch = job.globalBatch
        heartbeatSeconds = timing.heartbeat.seconds; timeoutSeconds = timing.timeout.seconds; experiment = job.experiment
        ring = job.ring
    }

    /// The JSON of the welcome: sorted keys, so the same run always sends the same bytes.
    var json: String { String(decoding: try! JSONEncoder.sorted.encode(self), as: UTF8.self) }
}

/// What a strategy tells joining workers about the run, beyond the model.
public struct Job: Sendable {
    public var mode: String
    public var seed: UInt64
    public var globalBatch: Int
    public var experiment: Experiment?
    /// Parameters and gradients travel as bfloat16.
    public var compactVectors = false
    public var ring: RingConfiguration?
}

/// What a ring worker needs to step its replica of the model as the coordinator steps its own.
public struct RingConfiguration: Codable, Equatable, Sendable {
    public var optimizer: OptimizerSettings
    public var schedule: LearningRateSchedule
    public var clipNorm: Float?
    public var stepsPerEpoch: Int
    public var totalSteps: Int
}

extension Capabilities {
    /// The optional features a worker needs for `model` (and, in a federated run, `experiment`; in synchronous SGD,
    /// bfloat16 vectors or the ring).
    static func required(model: ModelSpec, experiment: Experiment?, compactVectors: Bool, ring: Bool) -> Capabilities {
        var needed: Capabilities = []
        if model.dropout > 0 { needed.insert(.dropout) }
        if model.batchNorm { needed.insert(.batchNorm) }
        if model.residualBlocks > 0 { needed.insert(.residualBlocks) }
        if let adversaries = experiment?.adversaries, adversaries.fraction > 0 { needed.insert(.adversarialClients) }
        if experiment?.secureAggregation != nil { needed.insert(.secureAggregation) }
        if experiment?.hostAggregation == true { needed.insert(.hostAggregation) }
        if compactVectors { needed.insert(.compactVectors) }
        if ring { needed.insert(.ring) }
        return needed
    }
}
