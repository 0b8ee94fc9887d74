import ArgumentParser
import Foundation
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

/// Per-round output of a federated run: a line per round, the JSONL log, and the summary at the end.
struct FederatedLog {
    let experiment: Experiment
    private var metrics: MetricsLog
    /// The global model, for the weights' histograms.
    private let network: Network
    private var bytesTotal = 0
    private let started = ContinuousClock.now

    init(experiment: Experiment, output: OutputOptions, network: Network) throws {
        self.experiment = experiment
        self.network = network
        metrics = try MetricsLog(output)
    }

    mutating func record(_ round: FederatedRun.Round) throws {
        let report = round.report
        let number = report.round + 1
        bytesTotal += report.bytesSent + report.bytesReceived
        let test = round.evaluation.map { String(format: "  test loss %.4f  test acc %@", $0.loss, Format.percent($0.accuracy)) } ?? ""
        var line = String(format: "round %d/%d  clients %d/%d  train loss %.4f%@  %.3fs",
                          number, experiment.rounds, report.answered, report.expected, report.result.meanLoss, test, report.seconds)
        if !report.missed.isEmpty { line += "  left out \(report.missed.map(String.init).joined(separator: ","))" }
        if let reason = report.skipped { line += "  skipped: \(reason)" }
        if let m = report.result.masking {
            line += "  masked \(m.masked)" + (m.dropped > 0 ? " (\(m.dropped) dropped, unmasked from shares)" : "") + (m.clamped > 0 ? ", \(m.clamped) values clamped" : "")
        }
        if let privacy = report.result.privacy {
            line += String(format: "  ε %.3f  clipped %d/%d at S %.3g", privacy.epsilon, privacy.clipped, privacy.updates, privacy.clip)
        }
        print(line)
        var extra: [String: Any] = [:]
        if let p = report.result.privacy {
            extra = ["epsilon": p.epsilon, "delta": experiment.privacy!.delta, "clipped": p.clipped, "clip": p.clip]
            if let median = p.medianNorm { extra["median_update_norm"] = median }
        }
        if let evaluation = round.evaluation {
            extra.merge(["test_loss": evaluation.loss, "test_accuracy": evaluation.accuracy]) { $1 }
        }
        if let m = report.result.masking {
            extra.merge(["masked": m.masked, "masked_dropped": m.dropped, "clamped_values": m.clamped]) { $1 }
        }
        try metrics.append(extra.merging([
            "round": number, "sampled": report.expected, "answered": report.answered, "missed": report.missed, "missed_count": report.missed.count,
            "late": report.late, "skipped": report.skipped != nil,
            "train_loss": report.result.meanLoss, "train_accuracy": report.result.accuracy,
            "seconds": report.seconds, "evaluation_seconds": round.evaluationSeconds, "compute_seconds": report.result.computeSeconds,
            "communication_seconds": report.communicationSeconds, "aggregation_seconds": report.aggregationSeconds,
            "bytes_sent": report.bytesSent, "bytes_received": report.bytesReceived, "bytes_total": bytesTotal,
            "learning_rate": Double(experiment.learningRate(round: report.round)), "workers": report.workers, "rejected_messages": report.rejectedSoFar,
            "elapsed_seconds": started.duration(to: .now).seconds,
        ]) { $1 })
        try metrics.histograms(of: network, step: number)
        if round.reachedTarget, let target = experiment.targetAccuracy {
            print("reached the target of \(Format.percent(target)) test accuracy in round \(number)")
        }
        if round.budgetSpent, let target = experiment.privacy?.targetEpsilon {
            print("stopped after round \(number): another round would take ε past the target of \(target)")
        }
    }

    /// Prints and logs the summary: rounds to target, final and best accuracy.
    mutating func finish(_ outcome: FederatedRun.Outcome) throws {
        let target = experiment.targetAccuracy
        var summary = "\(experiment.name) (seed \(experiment.seed)): \(outcome.rounds) rounds, final test accuracy \(Format.percent(outcome.last?.accuracy ?? 0)), best \(Format.percent(outcome.bestAccuracy))"
        if let target {
            summary += outcome.roundToTarget.map { "; \(Format.percent(target)) first reached in round \($0)" } ?? "; \(Format.percent(target)) not reached"
        }
        print(summary)
        try metrics.append([
            "summary": true, "experiment": experiment.name, "seed": experiment.seed, "strategy": experiment.strategy.kind.rawValue,
            "target_accuracy": target ?? NSNull(), "rounds_to_target": outcome.roundToTarget ?? NSNull(), "rounds": outcome.rounds,
            "final_test_accuracy": outcome.last?.accuracy ?? 0, "best_test_accuracy": outcome.bestAccuracy, "seconds": started.duration(to: .now).seconds,
        ])
    }
}

extension Experiment {
    /// The experiment in one line, for the log; with the model's parameter count when given.
    func summary(parameters: Int? = nil) -> String {
        "\(name): \(strategy.description), \(model.description)\(parameters.map { " (\($0) parameters)" } ?? ""), \(partition.description), K = \(clients), C = \(fraction), E = \(localEpochs), B = \(localBatch.map(String.init) ?? "∞"), η = \(learningRate), \(rounds) rounds, seed \(seed)"
            + (secureAggregation.map { ", secure aggregation (threshold \($0.threshold), range ±\($0.range))" } ?? "")
    }
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

    @Option(help: ArgumentHelp("With hostAggregation: split the clients among this many hosts, as `nn launch --workers N` does.",
                               valueName: "n"))
    var hosts: Int = 1

    @OptionGroup var output: OutputOptions
    @OptionGroup var global: GlobalOptions

    public func validate() throws {
        guard experimentOptions.config != nil else { throw ValidationError("missing --config FILE") }
        guard (clientThreads ?? 1) >= 1 else { throw ValidationError("--client-threads must be at least 1") }
        guard hosts >= 1 else { throw ValidationError("--hosts must be at least 1") }
    }

    public func run() async throws {
        let logger = try global.start("nn.simulate")
        guard let experiment = try experimentOptions.load() else { return }
        let clientThreads = self.clientThreads ?? ProcessInfo.processInfo.activeProcessorCount
        let dataOptions = try DataOptions.parse(data.map { ["--data", $0] } ?? []).fixing(experiment)
        let (train, test) = try dataOptions.load(logger)
        try check(experiment.model, fits: train)
        let run = try FederatedRun(experiment: experiment, train: train, test: test, checkpoint: output.out,
                                   stopAtTarget: experimentOptions.stopAtTarget, logger: logger)
        logger.info("\(experiment.summary()); \(clientThreads) client thread\(clientThreads == 1 ? "" : "s")")
        var log = try FederatedLog(experiment: experiment, output: output, network: run.network)
        let outcome = try run.simulate(threads: clientThreads, hosts: hosts) { try log.record($0) }
        try log.finish(outcome)
    }
}
