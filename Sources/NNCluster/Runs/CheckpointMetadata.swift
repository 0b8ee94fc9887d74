import Foundation
import NNCore

/// Settings recorded in a checkpoint's metadata (`training`), so a model says how it was made.
struct TrainingRecord: Codable {
    var dataset: String
    var mode: String
    var workers: Int?
    var optimizer: OptimizerSettings
    var schedule: LearningRateSchedule
    var clip: Float?
    var batch: Int
    var epochs: Int
    var seed: UInt64
    var robust: RobustGradients?
    /// Absent for one thread: a batch cut in slices is computed as that many workers would.
    var batchThreads: Int?

    init(_ settings: TrainingSettings, mode: String, workers: Int?) {
        dataset = settings.dataset; self.mode = mode; self.workers = workers; optimizer = settings.optimizer
        schedule = settings.schedule; clip = settings.clip; batch = settings.batch; epochs = settings.epochs; seed = settings.seed
        robust = settings.robust
        batchThreads = settings.batchThreads > 1 ? settings.batchThreads : nil
    }
}

enum CheckpointMetadata {
    /// A trained model with its training settings and test accuracy.
    static func save(_ network: Network, record: TrainingRecord, evaluation: Evaluation, to path: String) throws {
        try keep(Checkpoint(network: network, metadata: [
            "training": String(decoding: try JSONEncoder.sorted.encode(record), as: UTF8.self),
            "test_accuracy": String(format: "%.4f", evaluation.accuracy),
        ]), at: path)
    }

    /// A federated run's global model with its experiment and test accuracy; `mode` says how it ran.
    static func save(_ network: Network, experiment: Experiment, mode: String, evaluation: Evaluation, to path: String) throws {
        try keep(Checkpoint(network: network, metadata: [
            "experiment": String(decoding: try JSONEncoder.sorted.encode(experiment), as: UTF8.self),
            "mode": mode,
            "test_accuracy": String(format: "%.4f", evaluation.accuracy),
        ]), at: path)
    }

    /// Writes the checkpoint to `path`; when that fails (the disk filled up, the folder went away), to the
    /// temporary folder instead, and the error says where: a trained model is never left only in memory.
    private static func keep(_ checkpoint: Checkpoint, at path: String) throws {
        do {
            try checkpoint.save(to: path)
        } catch {
            let fallback = FileManager.default.temporaryDirectory.appendingPathComponent("nn-model-\(getpid()).safetensors").path
            guard (try? checkpoint.save(to: fallback)) != nil else { throw error }
            throw ClusterError("\(error); the model was written to \(fallback) instead")
        }
    }
}
