import Logging
import Metrics
import NNCore
import NNData

/// A federated experiment: the FedAvg-family strategy driven by a coordinator with worker processes, or by a
/// simulation with every client in this process; a test evaluation after every round, the first round that
/// reaches the target accuracy (optionally stopping there), the checkpoint at the end and, on a failure after
/// a round, the checkpoint of the last global model before the error is passed on.
public final class FederatedRun {
    public let experiment: Experiment
    public let strategy: FederatedAveraging
    public var network: Network { strategy.network }
    private let train: Dataset, test: Dataset?
    private let checkpoint: String?
    private let stopAtTarget: Bool
    private let runState: RunStateSettings?
    private let logger: Logger

    /// `test`: nil skips the evaluations (benchmarks). `runState`: where a coordinated run keeps the state that
    /// lets it be resumed, and whether to resume it.
    public init(experiment: Experiment, train: Dataset, test: Dataset?, checkpoint: String? = nil, stopAtTarget: Bool = false,
                runState: RunStateSettings? = nil, logger: Logger) throws {
        self.experiment = experiment; self.train = train; self.test = test; self.checkpoint = checkpoint
        self.stopAtTarget = stopAtTarget; self.runState = runState; self.logger = logger
        strategy = try FederatedAveraging(experiment: experiment, trainingLabels: train.labels, classes: train.classes)
    }

    /// A round as it ran, with the test evaluation after it.
    public struct Round: Codable, Sendable {
        public var report: RoundReport
        public var evaluation: Evaluation?
        public var evaluationSeconds: Double
        /// This is the first round whose evaluation reached the experiment's target accuracy.
        public var reachedTarget: Bool
        /// Another round would spend more than the experiment's privacy budget (targetEpsilon): the run stops here.
        public var budgetSpent = false
    }

    /// What the run came to.
    public struct Outcome: Codable, Sendable {
        public var rounds = 0
        public var last: Evaluation?
        public var bestAccuracy = 0.0
        /// The first round (from 1) that reached the target accuracy.
        public var roundToTarget: Int?
    }

    /// The reports a run state keeps.
    struct History: Codable {
        var rounds: [Round] = []
        var outcome = Outcome()
    }

    /// Runs over `transport` with workers that host the clients. A resumed run first repeats `onRound` for the
    /// rounds it had done.
    public func run(over transport: ServerTransport, cluster: CoordinatorSettings, onRound: (Round) throws -> Void = { _ in }) throws -> Outcome {
        if let checkpoint { try AtomicFile.checkWritable(checkpoint) }
        let store = try runState.map { try RunStateStore($0, settings: experiment, data: train.identity) }
        var history = History()
        if let store, let (roundsDone, saved) = try store.resume(strategy, rounds: strategy.rounds, history: History.self) {
            history = saved
            logger.info("resuming \(store.settings.directory) after round \(roundsDone) of \(strategy.rounds)")
            for round in history.rounds { try onRound(round) }
        }
        let coordinator = Coordinator(transport: transport, strategy: strategy, data: train.identity, settings: cluster, logger: logger)
        do {
            // A run that had stopped at its target is done.
            let first = stopAtTarget && history.outcome.roundToTarget != nil ? strategy.rounds : history.rounds.count
            if first < strategy.rounds { try coordinator.run(from: first) { report in
                let goOn = try record(report, into: &history.outcome, evaluate: { network.evaluate($0) }) { round in
                    history.rounds.append(round)
                    try onRound(round)
                }
                if let store, !goOn || store.due(roundsDone: report.round + 1) || cluster.stop?.reason != nil || report.round + 1 == strategy.rounds {
                    try store.save(strategy, roundsDone: report.round + 1, history: history)
                }
                return goOn
            } }
        } catch {
            coordinator.shutdown(reason: "the coordinator stopped: \(error)")
            if let path = checkpoint, let last = history.outcome.last {
                try CheckpointMetadata.save(network, experiment: experiment, mode: "federated", evaluation: last, to: path)
                logger.error("stopped after \(history.outcome.rounds) rounds; wrote the model so far to \(path)")
            }
            throw error
        }
        try finish(history.outcome, mode: "federated")
        return history.outcome
    }

    /// Runs with every client in this process, trained on `threads` threads (which also share the evaluation).
    public func simulate(threads: Int, onRound: (Round) throws -> Void = { _ in }) throws -> Outcome {
        if let checkpoint { try AtomicFile.checkWritable(checkpoint) }
        let host = try ClientHost(experiment: experiment, data: train, clients: 0..<experiment.clients, threads: threads)
        let simulation = try Simulation(strategy: strategy, host: host)
        var outcome = Outcome()
        try simulation.run { report in
            try record(report, into: &outcome, evaluate: { host.evaluate(parameters: network.parameters.array, state: network.state.array, on: $0) }, onRound)
        }
        try finish(outcome, mode: "simulate")
        return outcome
    }

    /// Evaluates after a round and reports it; false once the run should stop.
    private func record(_ report: RoundReport, into outcome: inout Outcome, evaluate: (Dataset) -> Evaluation, _ onRound: (Round) throws -> Void) throws -> Bool {
        let start = ContinuousClock.now
        let evaluation = test.map(evaluate)
        var round = Round(report: report, evaluation: evaluation, evaluationSeconds: start.duration(to: .now).seconds, reachedTarget: false)
        outcome.rounds = report.round + 1
        if let evaluation {
            Gauge(label: "nn_test_accuracy").record(evaluation.accuracy)
            outcome.last = evaluation
            outcome.bestAccuracy = max(outcome.bestAccuracy, evaluation.accuracy)
            if outcome.roundToTarget == nil, let target = experiment.targetAccuracy, evaluation.accuracy >= target {
                outcome.roundToTarget = outcome.rounds
                round.reachedTarget = true
            }
        }
        if let spec = experiment.privacy, let budget = spec.targetEpsilon, let accountant = strategy.accountant,
           accountant.epsilon(rounds: outcome.rounds + 1, delta: spec.delta).epsilon > budget {
            round.budgetSpent = true
        }
        try onRound(round)
        return !(round.reachedTarget && stopAtTarget) && !round.budgetSpent
    }

    private func finish(_ outcome: Outcome, mode: String) throws {
        guard let path = checkpoint, let last = outcome.last else { return }
        try CheckpointMetadata.save(network, experiment: experiment, mode: mode, evaluation: last, to: path)
        logger.info("wrote \(path)")
    }
}
