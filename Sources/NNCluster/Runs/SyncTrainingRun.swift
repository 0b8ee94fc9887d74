import Logging
import NNCore
import NNData

/// Synchronous SGD with a coordinator and workers: the strategy at global batch workers × batch, the
/// coordinator over a transport, a test evaluation after every epoch, the checkpoint at the end, and on a
/// failure after training started the checkpoint of the last state before the error is passed on.
public final class SyncTrainingRun {
    public let settings: TrainingSettings
    public let cluster: CoordinatorSettings
    public let strategy: SynchronousSGD
    public var network: Network { strategy.network }
    private let train: Dataset, test: Dataset?
    private let logger: Logger

    /// `test`: nil skips the evaluations (benchmarks).
    public init(settings: TrainingSettings, cluster: CoordinatorSettings, train: Dataset, test: Dataset?, logger: Logger) {
        self.settings = settings; self.cluster = cluster; self.train = train; self.test = test; self.logger = logger
        let update = ParameterUpdate(network: Network(spec: settings.model, seed: settings.seed), optimizer: settings.optimizer,
                                     schedule: settings.schedule, clipNorm: settings.clip)
        strategy = SynchronousSGD(update: update, seed: settings.seed, trainingSamples: train.sampleCount,
                                  globalBatch: cluster.expectedWorkers * settings.batch, epochs: settings.epochs)
    }

    public var globalBatch: Int { strategy.globalBatch }
    public var stepsPerEpoch: Int { strategy.roundsPerEpoch }

    /// What the run came to: the final test evaluation (nil without a test set) and the messages rejected.
    public struct Outcome: Sendable {
        public var evaluation: Evaluation?
        public var rejectedMessages: Int
        public var epochs: [EpochReport]
    }

    /// Runs every step over `transport`. `onStep` gets the epoch so far after each step, `onEpoch` each
    /// epoch's report with its evaluation.
    public func run(over transport: ServerTransport, onStep: (EpochReport, Int) -> Void = { _, _ in },
                    onEpoch: (EpochReport) throws -> Void = { _ in }) throws -> Outcome {
        if let path = settings.checkpoint { try AtomicFile.checkWritable(path) }
        let coordinator = Coordinator(transport: transport, strategy: strategy, data: train.identity, settings: cluster, logger: logger)
        var evaluation: Evaluation?
        var epochs: [EpochReport] = []
        var report = EpochReport(epoch: 1)
        do {
            try coordinator.run { round in
                report.add(round)
                let done = round.round % stepsPerEpoch + 1
                onStep(report, done)
                guard done == stepsPerEpoch else { return true }
                report.learningRate = strategy.update.learningRate
                evaluation = test.map { network.evaluate($0) }
                report.evaluation = evaluation
                try onEpoch(report)
                epochs.append(report)
                report = EpochReport(epoch: report.epoch + 1)
                return true
            }
        } catch {
            coordinator.shutdown(reason: "the coordinator stopped: \(error)")
            if let path = settings.checkpoint, let test, strategy.update.step > 0 {
                try save(to: path, evaluation: network.evaluate(test))
                logger.error("stopped after \(strategy.update.step) steps; wrote the model so far to \(path)")
            }
            throw error
        }
        // Stopped before the last epoch's evaluation: evaluate the model as it is.
        if epochs.count < settings.epochs, let test { evaluation = network.evaluate(test) }
        if let path = settings.checkpoint, let evaluation {
            try save(to: path, evaluation: evaluation)
            logger.info("wrote \(path)")
        }
        return Outcome(evaluation: evaluation, rejectedMessages: coordinator.rejected, epochs: epochs)
    }

    private func save(to path: String, evaluation: Evaluation) throws {
        try CheckpointMetadata.save(network, record: TrainingRecord(settings, mode: "sync", workers: cluster.expectedWorkers),
                                    evaluation: evaluation, to: path)
    }
}
