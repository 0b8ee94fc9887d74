import Logging
import NNCore
import NNData

/// Training in one process: for each epoch, the seeded sample order in batches, then the test evaluation;
/// the checkpoint at the end, and when a later epoch fails (a metrics file that cannot be written, a model that
/// diverged), the checkpoint of the last finished epoch before the error is passed on.
public final class LocalTrainingRun {
    public let settings: TrainingSettings
    public let trainer: Trainer
    public var network: Network { trainer.network }
    private let train: Dataset, test: Dataset
    private let logger: Logger

    public init(settings: TrainingSettings, train: Dataset, test: Dataset, logger: Logger) {
        self.settings = settings; self.train = train; self.test = test; self.logger = logger
        trainer = Trainer(network: Network(spec: settings.model, seed: settings.seed), optimizer: settings.optimizer,
                          schedule: settings.schedule, clipNorm: settings.clip, seed: settings.seed)
    }

    /// Trains every epoch; `onStep` gets the epoch's running totals after each step, `onEpoch` each epoch's
    /// report. Returns the final test evaluation.
    public func run(onStep: (Int, Trainer.EpochProgress) -> Void = { _, _ in }, onEpoch: (EpochReport) throws -> Void = { _ in }) throws -> Evaluation {
        if let path = settings.checkpoint { try AtomicFile.checkWritable(path) }
        let buffer = BatchBuffer(capacity: settings.batch, inputWidth: settings.model.inputWidth)
        var evaluation = network.evaluate(test)
        var finished = 0
        do {
            for epoch in 1...settings.epochs {
                let order = epochOrder(seed: settings.seed, epoch: epoch, count: train.sampleCount)
                let start = ContinuousClock.now
                let result = try trainer.trainEpoch(train, order: order, batchSize: settings.batch, buffer: buffer, epochs: settings.epochs) {
                    onStep(epoch, $0)
                }
                var report = EpochReport(epoch: epoch)
                report.total.seconds = start.duration(to: .now).seconds
                report.total.result = RoundResult(samples: result.samples, lossSum: result.lossSum, correct: result.correct)
                report.learningRate = trainer.learningRate
                evaluation = network.evaluate(test)
                report.evaluation = evaluation
                finished = epoch
                try onEpoch(report)
            }
        } catch {
            // The parameters are those of the failed epoch's last good step; keep them if they are finite.
            let parameters = UnsafeBufferPointer(start: network.parameters.base, count: network.parameterCount)
            if let path = settings.checkpoint, finished > 0, BLAS.allFinite(parameters) {
                try save(to: path, evaluation: network.evaluate(test))
                logger.error("stopped after \(finished) epoch\(finished == 1 ? "" : "s"); wrote the model so far to \(path)")
            }
            throw error
        }
        if let path = settings.checkpoint {
            try save(to: path, evaluation: evaluation)
            logger.info("wrote \(path)")
        }
        return evaluation
    }

    private func save(to path: String, evaluation: Evaluation) throws {
        try CheckpointMetadata.save(network, record: TrainingRecord(settings, mode: "local", workers: nil), evaluation: evaluation, to: path)
    }
}
