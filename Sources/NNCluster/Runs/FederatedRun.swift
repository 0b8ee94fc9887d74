import Foundation
import Logging
import Metrics
import NNCore
import NNData

/// A federated experiment: the FedAvg-family strategy driven by a coordinator with worker processes, or by a
/// simulation with every client in this process; a test evaluation after every `evaluateEvery` rounds (and the
/// last) on every core, the first evaluated round that reaches the target accuracy (optionally stopping there),
/// the checkpoint at the end and, on a failure after a round, the checkpoint of the last global model before the
/// error is passed on.
public final class FederatedRun {
    public let experiment: Experiment
    public let strategy: FederatedAveraging
    public var network: Network { strategy.network }
    private let train: Dataset, test: Dataset?
    private let checkpoint: String?
    private let stopAtTarget: Bool
    private let runState: RunStateSettings?
    private let logger: Logger
    /// A coordinated run's networks for evaluating on every core (a simulation uses its client threads').
    private lazy var evaluators = (0..<ProcessInfo.processInfo.activeProcessorCount).map { _ in Network(spec: experiment.model) }

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
        /// The round (from 1) whose model `last` evaluated.
        public var evaluatedRound = 0
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
                let goOn = try record(report, into: &history.outcome, evaluate: evaluateOnEveryCore) { round in
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
            if let path = checkpoint, history.outcome.last != nil {
                try finish(history.outcome, mode: "federated", evaluate: evaluateOnEveryCore)
                logger.error("stopped after \(history.outcome.rounds) rounds; wrote the model so far to \(path)")
            }
            throw error
        }
        try finish(history.outcome, mode: "federated", evaluate: evaluateOnEveryCore)
        return history.outcome
    }

    private func evaluateOnEveryCore(_ test: Dataset) -> Evaluation {
        Evaluation.split(networks: evaluators, parameters: network.parameters.array, state: network.state.array, on: test)
    }

    /// Runs with every client in this process, trained on `threads` threads (which also share the evaluation),
    /// split among `hosts` as that many workers would host them.
    public func simulate(threads: Int, hosts: Int = 1, onRound: (Round) throws -> Void = { _ in }) throws -> Outcome {
        if let checkpoint { try AtomicFile.checkWritable(checkpoint) }
        let host = try ClientHost(experiment: experiment, data: train, clients: 0..<experiment.clients, threads: threads)
        let simulation = try Simulation(strategy: strategy, host: host, hosts: hosts)
        var outcome = Outcome()
        let evaluate = { host.evaluate(parameters: self.network.parameters.array, state: self.network.state.array, on: $0) }
        try simulation.run { report in try record(report, into: &outcome, evaluate: evaluate, onRound) }
        try finish(outcome, mode: "simulate", evaluate: evaluate)
        return outcome
    }

    /// Evaluates after a round when it is due (every `evaluateEvery` rounds, the last round, or the last before the
    /// privacy budget runs out) and reports it; false once the run should stop.
    private func record(_ report: RoundReport, into outcome: inout Outcome, evaluate: (Dataset) -> Evaluation, _ onRound: (Round) throws -> Void) throws -> Bool {
        outcome.rounds = report.round + 1
        var budgetSpent = false
        if let spec = experiment.privacy, let budget = spec.targetEpsilon, let accountant = strategy.accountant,
           accountant.epsilon(rounds: outcome.rounds + 1, delta: spec.delta).epsilon > budget {
            budgetSpent = true
        }
        let due = outcome.rounds % experiment.evaluateEvery == 0 || outcome.rounds == strategy.rounds || budgetSpent
        let start = ContinuousClock.now
        let evaluation = due ? test.map(evaluate) : nil
        var round = Round(report: report, evaluation: evaluation, evaluationSeconds: start.duration(to: .now).seconds, reachedTarget: false,
                          budgetSpent: budgetSpent)
        if let evaluation {
            Gauge(label: "nn_test_accuracy").record(evaluation.accuracy)
            outcome.last = evaluation
            outcome.evaluatedRound = outcome.rounds
            outcome.bestAccuracy = max(outcome.bestAccuracy, evaluation.accuracy)
            if outcome.roundToTarget == nil, let target = experiment.targetAccuracy, evaluation.accuracy >= target {
                outcome.roundToTarget = outcome.rounds
                round.reachedTarget = true
            }
        }
        try onRound(round)
        return !(round.reachedTarget && stopAtTarget) && !round.budgetSpent
    }

    /// Writes the checkpoint, with the evaluation of the model it holds (made now if the last round had none).
    private func finish(_ outcome: Outcome, mode: String, evaluate: (Dataset) -> Evaluation) throws {
        guard let path = checkpoint, let last = outcome.last else { return }
        let evaluation = outcome.evaluatedRound == outcome.rounds ? last : test.map(evaluate) ?? last
        try CheckpointMetadata.save(network, experiment: experiment, mode: mode, evaluation: evaluation, to: path)
        logger.info("wrote \(path)")
    }
}
