import ArgumentParser
import Foundation
import Logging
import NNCluster
import NNCore
import NNData

/// An experiment file and the few settings a command line may override (for seed sweeps and learning-rate grids).
struct ExperimentOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Federated experiment file (JSON; see docs/federated.md).", valueName: "file"), completion: .file(extensions: ["json"]))
    var config: String?

    @Option(name: .customLong("set-seed"), help: "Override the experiment's seed.")
    var seedOverride: UInt64?

    @Option(name: .customLong("set-lr"), help: "Override the experiment's client learning rate.")
    var learningRateOverride: Float?

    @Option(name: .customLong("set-rounds"), help: "Override the experiment's number of rounds.")
    var roundsOverride: Int?

    @Flag(help: "Stop once the experiment's target accuracy is reached.")
    var stopAtTarget = false

    var overrides: Bool { seedOverride != nil || learningRateOverride != nil || roundsOverride != nil || stopAtTarget }

    /// The experiment with the overrides applied, validated; nil without --config.
    func load() throws -> Experiment? {
        guard let config else {
            if overrides { throw ValidationError("--set-seed, --set-lr, --set-rounds and --stop-at-target need --config") }
            return nil
        }
        var experiment = try Experiment.load(config)
        if let seedOverride { experiment.seed = seedOverride }
        if let learningRateOverride { experiment.learningRate = learningRateOverride }
        if let roundsOverride { experiment.rounds = roundsOverride }
        do { try experiment.validate() } catch { throw ValidationError("\(config) with the overrides: \(error)") }
        if stopAtTarget && experiment.targetAccuracy == nil {
            throw ValidationError("--stop-at-target: \(config) sets no targetAccuracy")
        }
        return experiment
    }
}

/// Per-round output of a federated run: a line per round, the JSONL log, and the first round that reached the
/// experiment's target accuracy.
struct FederatedLog {
    let experiment: Experiment
    private var metrics: MetricsLog
    private var bytesTotal = 0
    private let started = ContinuousClock.now
    private(set) var reachedTarget: Int?
    private(set) var best = 0.0
    private(set) var last: Evaluation?
    private(set) var roundsDone = 0

    init(experiment: Experiment, metricsPath: String?) {
        self.experiment = experiment
        metrics = MetricsLog(path: metricsPath)
    }

    /// Records a round; returns false once the run should stop (target reached and `stopAtTarget`).
    mutating func record(_ report: RoundReport, evaluation: Evaluation, evaluationSeconds: Double, rejected: Int, stopAtTarget: Bool) throws -> Bool {
        let round = report.round + 1
        bytesTotal += report.bytesSent + report.bytesReceived
        best = max(best, evaluation.accuracy)
        last = evaluation
        roundsDone = round
        let rate = Double(experiment.learningRate(round: report.round))
        var line = String(format: "round %d/%d  clients %d/%d  train loss %.4f  test loss %.4f  test acc %@  %.3fs",
                          round, experiment.rounds, report.answered, report.expected, report.result.meanLoss, evaluation.loss,
                          Format.percent(evaluation.accuracy), report.seconds)
        if !report.missed.isEmpty { line += "  left out \(report.missed.map(String.init).joined(separator: ","))" }
        if report.skipped { line += "  skipped: fewer than \(experiment.minimumResults) results" }
        print(line)
        try metrics.append([
            "round": round, "sampled": report.expected, "answered": report.answered, "missed": report.missed, "late": report.late, "skipped": report.skipped,
            "train_loss": report.result.meanLoss, "train_accuracy": report.result.accuracy,
            "test_loss": evaluation.loss, "test_accuracy": evaluation.accuracy,
            "seconds": report.seconds, "evaluation_seconds": evaluationSeconds, "compute_seconds": report.result.computeSeconds,
            "communication_seconds": report.communicationSeconds, "aggregation_seconds": report.aggregationSeconds,
            "bytes_sent": report.bytesSent, "bytes_received": report.bytesReceived, "bytes_total": bytesTotal,
            "learning_rate": rate, "workers": report.workers, "rejected_messages": rejected,
            "elapsed_seconds": started.duration(to: .now).seconds,
        ])
        if reachedTarget == nil, let target = experiment.targetAccuracy, evaluation.accuracy >= target {
            reachedTarget = round
            print("reached the target of \(Format.percent(target)) test accuracy in round \(round)")
            if stopAtTarget { return false }
        }
        return true
    }

    /// Prints and logs the summary: rounds to target, final and best accuracy.
    mutating func finish() throws {
        let target = experiment.targetAccuracy
        var summary = "\(experiment.name) (seed \(experiment.seed)): \(roundsDone) rounds, final test accuracy \(Format.percent(last?.accuracy ?? 0)), best \(Format.percent(best))"
        if let target {
            summary += reachedTarget.map { "; \(Format.percent(target)) first reached in round \($0)" } ?? "; \(Format.percent(target)) not reached"
        }
        print(summary)
        try metrics.append([
            "summary": true, "experiment": experiment.name, "seed": experiment.seed, "strategy": experiment.strategy.kind.rawValue,
            "target_accuracy": target ?? NSNull(), "rounds_to_target": reachedTarget ?? NSNull(), "rounds": roundsDone,
            "final_test_accuracy": last?.accuracy ?? 0, "best_test_accuracy": best, "seconds": started.duration(to: .now).seconds,
        ])
    }
}

/// Writes a federated run's global model with the experiment in its metadata.
func saveFederatedCheckpoint(_ network: Network, experiment: Experiment, mode: String, evaluation: Evaluation, to path: String) throws {
    let metadata = [
        "experiment": String(decoding: try JSONEncoder.sorted.encode(experiment), as: UTF8.self),
        "mode": mode,
        "test_accuracy": String(format: "%.4f", evaluation.accuracy),
    ]
    try Checkpoint(network: network, metadata: metadata).save(to: path)
}

public struct Simulate: AsyncParsableCommand {
    public init() {}
    public static let configuration = CommandConfiguration(
        abstract: "Run a federated experiment with every client in this process (no sockets).",
        discussion: """
            Same strategy, same client code and same model as `nn launch --config` or `nn coordinator --config` with \
            workers, for the same seed. Clients of a round train in parallel on --client-threads threads.
            """)

    @OptionGroup var experimentOptions: ExperimentOptions

    @Option(help: ArgumentHelp("Folder with the experiment's data set (default: its usual folder).", valueName: "dir"), completion: .directory)
    var data: String?

    @Option(help: "Threads that train a round's clients in parallel (default: the processor count).")
    var clientThreads: Int?

    @Option(help: "Write one JSON object per round to this file.")
    var metrics: String?

    @Option(help: "Write the final global model here (safetensors).")
    var out: String?

    @OptionGroup var global: GlobalOptions

    public func validate() throws {
        guard experimentOptions.config != nil else { throw ValidationError("missing --config FILE") }
        guard (clientThreads ?? 1) >= 1 else { throw ValidationError("--client-threads must be at least 1") }
    }

    public func run() async throws {
        let logger = try global.start("nn.simulate")
        guard let experiment = try experimentOptions.load() else { return }
        let clientThreads = self.clientThreads ?? ProcessInfo.processInfo.activeProcessorCount
        let dataOptions = try DataOptions.parse(data.map { ["--data", $0] } ?? []).fixing(experiment)
        let (train, test) = try dataOptions.load(logger)
        try check(experiment.model, fits: train)
        let strategy = try FederatedAveraging(experiment: experiment, trainingLabels: train.labels, classes: train.classes)
        let host = try ClientHost(experiment: experiment, data: train, clients: 0..<experiment.clients, threads: clientThreads)
        let simulation = try Simulation(strategy: strategy, host: host)
        logger.info("\(experiment.name): \(experiment.strategy.description), \(experiment.model.description), \(experiment.partition.description), K = \(experiment.clients), C = \(experiment.fraction), E = \(experiment.localEpochs), B = \(experiment.localBatch.map(String.init) ?? "∞"), η = \(experiment.learningRate), \(experiment.rounds) rounds, seed \(experiment.seed); \(clientThreads) client thread\(clientThreads == 1 ? "" : "s")")
        var log = FederatedLog(experiment: experiment, metricsPath: metrics)
        let network = strategy.network
        try simulation.run { report in
            let start = ContinuousClock.now
            let evaluation = host.evaluate(parameters: network.parameters.array, state: network.state.array, on: test)
            return try log.record(report, evaluation: evaluation, evaluationSeconds: start.duration(to: .now).seconds,
                                  rejected: simulation.rejected, stopAtTarget: experimentOptions.stopAtTarget)
        }
        try log.finish()
        if let out, let evaluation = log.last {
            try saveFederatedCheckpoint(network, experiment: experiment, mode: "simulate", evaluation: evaluation, to: out)
            logger.info("wrote \(out)")
        }
    }
}
