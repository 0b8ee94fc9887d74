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
    private let runState: RunStateSettings?
    private let logger: Logger

    /// `runState`: where to keep the state that lets the run be resumed (every `every` epochs), and whether to
    /// resume it.
    public init(settings: TrainingSettings, train: Dataset, test: Dataset, runState: RunStateSettings? = nil, logger: Logger) {
        self.settings = settings; self.train = train; self.test = test; self.runState = runState; self.logger = logger
        trainer = Trainer(network: Network(spec: settings.model, seed: settings.seed), optimizer: settings.optimizer,
                          schedule: settings.schedule, clipNorm: settings.clip, seed: settings.seed, threads: settings.batchThreads)
    }

    /// Trains every epoch; `onStep` gets the epoch's running totals after each step, `onEpoch` each epoch's
    /// report (a resumed run first repeats those of the epochs it had finished). Returns the final test evaluation.
    public func run(onStep: (Int, Trainer.EpochProgress) -> Void = { _, _ in }, onEpoch: (EpochReport) throws -> Void = { _ in }) throws -> Evaluation {
        if let path = settings.checkpoint { try AtomicFile.checkWritable(path) }
        let store = try runState.map {
            try RunStateStore($0, settings: TrainingRecord(settings, mode: "local", workers: nil), model: settings.model, data: train.identity)
        }
        var history: [EpochReport] = []
        if let store, let (done, saved) = try store.resume(trainer.update, rounds: settings.epochs, history: [EpochReport].self) {
            history = saved
            logger.info("resuming \(store.settings.directory) after epoch \(done) of \(settings.epochs)")
            for report in history { try onEpoch(report) }
        }
        let buffer = BatchBuffer(capacity: settings.batch, inputWidth: settings.model.inputWidth)
        var evaluation = history.last?.evaluation ?? network.evaluate(test)
        var finished = history.count
        do {
            for epoch in (finished + 1)..<(settings.epochs + 1) {
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
                history.append(report)
                if let store, store.due(roundsDone: epoch) || epoch == settings.epochs {
                    try store.save(trainer.update, roundsDone: epoch, history: history)
                }
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
