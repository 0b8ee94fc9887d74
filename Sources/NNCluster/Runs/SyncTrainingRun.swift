import Logging
import Metrics
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
    private let runState: RunStateSettings?
    private let logger: Logger

    /// `test`: nil skips the evaluations (benchmarks). `runState`: where to keep the state that lets the run be
    /// resumed, and whether to resume it.
    public init(settings: TrainingSettings, cluster: CoordinatorSettings, train: Dataset, test: Dataset?, runState: RunStateSettings? = nil,
                logger: Logger) {
        self.settings = settings; self.cluster = cluster; self.train = train; self.test = test; self.runState = runState; self.logger = logger
        let update = ParameterUpdate(network: Network(spec: settings.model, seed: settings.seed), optimizer: settings.optimizer,
                                     schedule: settings.schedule, clipNorm: settings.clip)
        strategy = SynchronousSGD(update: update, seed: settings.seed, trainingSamples: train.sampleCount,
                                  globalBatch: cluster.expectedWorkers * settings.batch, epochs: settings.epochs, robust: settings.robust,
                                  compactVectors: cluster.compactVectors, topology: cluster.topology, ringSteps: cluster.ringSteps)
    }

    public var globalBatch: Int { strategy.globalBatch }
    public var stepsPerEpoch: Int { strategy.stepsPerEpoch }

    /// What the run came to: the final test evaluation (nil without a test set) and the messages rejected.
    public struct Outcome: Sendable {
        public var evaluation: Evaluation?
        public var rejectedMessages: Int
        public var epochs: [EpochReport]
    }

    /// The reports a run state keeps: the finished epochs, and the one in progress.
    struct History: Codable {
        var epochs: [EpochReport] = []
        var current = EpochReport(epoch: 1)
    }

    /// Runs every step over `transport`. `onStep` gets the epoch so far after each step, `onEpoch` each
    /// epoch's report with its evaluation (a resumed run first repeats those of the epochs it had finished).
    public func run(over transport: ServerTransport, onStep: (EpochReport, Int) -> Void = { _, _ in },
                    onEpoch: (EpochReport) throws -> Void = { _ in }) throws -> Outcome {
        if let path = settings.checkpoint { try AtomicFile.checkWritable(path) }
        if cluster.topology.sumsAmongWorkers {
            // A ring sums gradients among the workers in float32: a robust rule or bfloat16 would need each one.
            if let robust = settings.robust { throw ClusterError("the \(cluster.topology.rawValue) topology sums gradients among the workers; the robust rule \(robust.rule.rawValue) needs each worker's gradient at the coordinator") }
            if cluster.compactVectors { throw ClusterError("the \(cluster.topology.rawValue) topology moves float32 chunks; bfloat16 vectors are for the parameter server") }
        }
        let store = try runState.map {
            try RunStateStore($0, settings: TrainingRecord(settings, mode: "sync", workers: cluster.expectedWorkers), model: settings.model, data: train.identity)
        }
        var history = History(), first = 0
        if let store, let (roundsDone, saved) = try store.resume(strategy, rounds: strategy.rounds, history: History.self) {
            (first, history) = (roundsDone, saved)
            let stepsDone = roundsDone == 0 ? 0 : strategy.steps(of: roundsDone - 1).upperBound
            logger.info("resuming \(store.settings.directory) after step \(stepsDone) of \(strategy.stepsPerEpoch * settings.epochs)")
            for epoch in history.epochs { try onEpoch(epoch) }
        }
        let coordinator = Coordinator(transport: transport, strategy: strategy, data: train.identity, settings: cluster, logger: logger)
        var evaluation = history.epochs.last?.evaluation
        do {
            // A finished run resumed has nothing left to do, and no workers to wait for.
            if first < strategy.rounds { try coordinator.run(from: first) { round in
                history.current.add(round)
                let steps = strategy.steps(of: round.round)
                onStep(history.current, (steps.upperBound - 1) % stepsPerEpoch + 1)
                let epochDone = steps.upperBound % stepsPerEpoch == 0
                if epochDone {
                    history.current.learningRate = strategy.update.learningRate
                    evaluation = test.map { network.evaluate($0) }
                    history.current.evaluation = evaluation
                    Gauge(label: "nn_epoch").record(history.current.epoch)
                    if let evaluation { Gauge(label: "nn_test_accuracy").record(evaluation.accuracy) }
                    try onEpoch(history.current)
                    history.epochs.append(history.current)
                    history.current = EpochReport(epoch: history.current.epoch + 1)
                }
                if let store, epochDone || store.due(steps: steps) || cluster.stop?.reason != nil {
                    try store.save(strategy, roundsDone: round.round + 1, history: history)
                }
                return true
            } }
        } catch {
            coordinator.shutdown(reason: "the coordinator stopped: \(error)")
            if let path = settings.checkpoint, let test, strategy.update.step > 0 {
                try save(to: path, evaluation: network.evaluate(test))
                logger.error("stopped after \(strategy.update.step) steps; wrote the model so far to \(path)")
            }
            throw error
        }
        let epochs = history.epochs
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
