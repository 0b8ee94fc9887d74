import ArgumentParser
import CSystem
import Foundation
import Logging
import NNCluster
import NNCore
import NNData
import NNProtocol

/// Training modes of the coordinator.
enum Mode: String, ExpressibleByArgument, CaseIterable {
    case sync
}

/// Timing options shared by coordinator and worker.
struct ClusterTimingOptions: ParsableArguments {
    @Option(help: "Seconds between heartbeats to an idle peer.")
    var heartbeat: Double = 0.5

    @Option(help: "Seconds of silence after which a peer counts as lost.")
    var timeout: Double = 5

    @Option(help: "Seconds to wait for registration.")
    var registrationTimeout: Double = 60

    func validate() throws {
        guard heartbeat > 0, timeout > heartbeat, registrationTimeout > 0 else {
            throw ValidationError("--heartbeat must be positive, --timeout longer than --heartbeat, --registration-timeout positive")
        }
    }
}

/// When started by `nn launch`, die with the launcher even if it is killed outright.
func followLauncher() {
    guard let value = ProcessInfo.processInfo.environment["NN_LAUNCHER_PID"], let launcher = Int32(value) else { return }
    _ = nn_set_parent_death_signal(SIGTERM)
    if getppid() != launcher { exit(1) }
}

public struct CoordinatorCommand: AsyncParsableCommand {
    public init() {}
    public static let configuration = CommandConfiguration(
        commandName: "coordinator",
        abstract: "Coordinate distributed training: shard the data over the workers, aggregate, evaluate, checkpoint.",
        discussion: """
            Synchronous SGD by default; with --config FILE a federated experiment (FedAvg and its family), whose \
            clients the workers host.
            """)

    @Option(help: "ZeroMQ endpoint to bind.")
    var bind: String = "tcp://*:5555"

    @Option(help: "Workers to wait for before training starts.")
    var workers: Int

    @Option(help: "Stop (after writing the checkpoint) when fewer workers than this remain.")
    var minWorkers: Int = 1

    @Option(help: "Training mode without --config: sync (synchronous SGD).")
    var mode: Mode = .sync

    @OptionGroup var experimentOptions: ExperimentOptions

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var optimization: OptimizationOptions
    @OptionGroup var dataOptions: DataOptions
    @OptionGroup var timing: ClusterTimingOptions
    @OptionGroup var runOptions: RunOptions
    @OptionGroup var global: GlobalOptions

    public func validate() throws {
        guard workers >= 1 else { throw ValidationError("--workers must be at least 1") }
        guard (1...workers).contains(minWorkers) else { throw ValidationError("--min-workers must be between 1 and --workers") }
        if experimentOptions.config != nil {
            let defaults = try CoordinatorCommand.parse(["--workers", "1"])
            guard try modelOptions.spec() == defaults.modelOptions.spec(), optimization.settings == defaults.optimization.settings,
                  optimization.learningRate == defaults.optimization.learningRate, optimization.clip == defaults.optimization.clip,
                  runOptions.batch == defaults.runOptions.batch, runOptions.epochs == defaults.runOptions.epochs,
                  runOptions.seed == defaults.runOptions.seed, mode == defaults.mode else {
                throw ValidationError("with --config the experiment fixes the model, optimizer, batch, epochs, seed and mode; drop those options, or use --set-seed, --set-lr, --set-rounds")
            }
        }
        _ = try experimentOptions.load()
    }

    public func run() async throws {
        followLauncher()
        let logger = try global.start("nn.coordinator")
        if let experiment = try experimentOptions.load() {
            try runFederated(experiment, logger: logger)
        } else {
            try runSynchronous(logger: logger)
        }
    }

    private var clusterSettings: Coordinator.Settings {
        .init(expectedWorkers: workers, minimumWorkers: minWorkers, registrationTimeout: .seconds(timing.registrationTimeout),
              heartbeatInterval: .seconds(timing.heartbeat), workerTimeout: .seconds(timing.timeout))
    }

    private func runFederated(_ experiment: Experiment, logger: Logger) throws {
        let dataOptions = try self.dataOptions.fixing(experiment)
        let (train, test) = try dataOptions.load(logger)
        try check(experiment.model, fits: train)
        let strategy = try FederatedAveraging(experiment: experiment, trainingLabels: train.labels, classes: train.classes)
        let network = strategy.network
        let maximum = Int64(4 * (network.parameterCount + network.state.count) + 4 * experiment.clients + 65_536)
        let server = try ZmqServer(bind: bind, settings: ZmqSettings(maximumMessageBytes: maximum))
        defer { server.close() }
        logger.info("listening on \(server.endpoint); \(experiment.name): \(experiment.strategy.description), \(experiment.model.description) (\(network.parameterCount) parameters), \(experiment.partition.description), K = \(experiment.clients), C = \(experiment.fraction), E = \(experiment.localEpochs), B = \(experiment.localBatch.map(String.init) ?? "∞"), η = \(experiment.learningRate), \(experiment.rounds) rounds, seed \(experiment.seed)")
        let coordinator = Coordinator(
            transport: server, strategy: strategy,
            configuration: RunConfiguration(experiment: experiment, heartbeatSeconds: timing.heartbeat, timeoutSeconds: timing.timeout),
            data: .init(fingerprint: train.fingerprint, inputWidth: train.inputWidth, classes: train.classes),
            settings: clusterSettings, logger: logger)
        var log = FederatedLog(experiment: experiment, metricsPath: runOptions.metrics)
        do {
            try coordinator.run { report in
                let start = ContinuousClock.now
                let evaluation = network.evaluate(test)
                return try log.record(report, evaluation: evaluation, evaluationSeconds: start.duration(to: .now).seconds,
                                      rejected: coordinator.rejected, stopAtTarget: experimentOptions.stopAtTarget)
            }
        } catch {
            coordinator.shutdown(reason: "the coordinator stopped: \(error)")
            if let out = runOptions.out, let evaluation = log.last {
                try saveFederatedCheckpoint(network, experiment: experiment, mode: "federated", evaluation: evaluation, to: out)
                logger.error("stopped after \(log.roundsDone) rounds; wrote the model so far to \(out)")
            }
            throw error
        }
        try log.finish()
        guard let evaluation = log.last else { return }
        printFinalReport(evaluation, test: test, classNames: dataOptions.kind.classNames)
        if let out = runOptions.out {
            try saveFederatedCheckpoint(network, experiment: experiment, mode: "federated", evaluation: evaluation, to: out)
            logger.info("wrote \(out)")
        }
    }

    private func runSynchronous(logger: Logger) throws {
        let (batch, epochs, seed, out) = (runOptions.batch, runOptions.epochs, runOptions.seed, runOptions.out)
        let spec = try modelOptions.spec()
        let (train, test) = try dataOptions.load(logger)
        try check(spec, fits: train)
        let network = Network(spec: spec, seed: seed)
        let trainer = Trainer(network: network, optimizer: optimization.settings, schedule: optimization.learningRate,
                              clipNorm: optimization.clip, seed: seed)
        let globalBatch = workers * batch
        let strategy = SynchronousSGD(trainer: trainer, trainingSamples: train.sampleCount, globalBatch: globalBatch, epochs: epochs)
        let server = try ZmqServer(bind: bind, settings: ZmqSettings(maximumMessageBytes: Int64(4 * (network.parameterCount + network.state.count) + 65_536)))
        defer { server.close() }
        logger.info("listening on \(server.endpoint); model \(spec.description), \(network.parameterCount) parameters; \(mode.rawValue) SGD, global batch \(globalBatch) (\(workers) × \(batch)), \(epochs) epochs")
        let configuration = RunConfiguration(mode: mode.rawValue, model: spec, seed: seed, globalBatch: globalBatch,
                                             heartbeatSeconds: timing.heartbeat, timeoutSeconds: timing.timeout)
        let coordinator = Coordinator(
            transport: server, strategy: strategy, configuration: configuration,
            data: .init(fingerprint: train.fingerprint, inputWidth: train.inputWidth, classes: train.classes),
            settings: clusterSettings, logger: logger)

        var metrics = MetricsLog(path: runOptions.metrics)
        var evaluation = network.evaluate(test)
        var bar = ProgressBar(label: "epoch 1/\(epochs)", total: strategy.roundsPerEpoch)
        let record = TrainingRecord(dataset: dataOptions.kind.rawValue, mode: mode.rawValue, workers: workers, optimizer: optimization.settings,
                                    schedule: optimization.learningRate, clip: optimization.clip, batch: batch, epochs: epochs, seed: seed)
        do {
            var report = EpochReport(epoch: 1)
            try coordinator.run { round in
                report.add(round)
                let done = round.round % strategy.roundsPerEpoch + 1
                bar.update(done: done, detail: String(format: "loss %.4f acc %@", report.result.meanLoss, Format.percent(report.result.accuracy)))
                guard done == strategy.roundsPerEpoch else { return true }
                bar.finish()
                evaluation = network.evaluate(test)
                print(epochLine(report.epoch, of: epochs, loss: report.result.meanLoss, accuracy: report.result.accuracy, test: evaluation,
                                samplesPerSecond: Double(report.result.samples) / report.seconds, seconds: report.seconds))
                try metrics.append([
                    "epoch": report.epoch, "train_loss": report.result.meanLoss, "train_accuracy": report.result.accuracy,
                    "test_loss": evaluation.loss, "test_accuracy": evaluation.accuracy,
                    "samples_per_second": Double(report.result.samples) / report.seconds, "seconds": report.seconds,
                    "compute_seconds": report.result.computeSeconds, "communication_seconds": report.communicationSeconds,
                    "aggregation_seconds": report.aggregationSeconds, "bytes_sent": report.bytesSent,
                    "bytes_received": report.bytesReceived, "workers": report.workers,
                    "learning_rate": Double(trainer.learningRate), "rejected_messages": coordinator.rejected,
                ])
                report = EpochReport(epoch: report.epoch + 1)
                bar = ProgressBar(label: "epoch \(report.epoch)/\(epochs)", total: strategy.roundsPerEpoch)
                return true
            }
        } catch {
            coordinator.shutdown(reason: "the coordinator stopped: \(error)")
            if let out, trainer.step > 0 {
                try saveCheckpoint(network, record: record, evaluation: network.evaluate(test), to: out)
                logger.error("stopped after \(trainer.step) steps; wrote the model so far to \(out)")
            }
            throw error
        }
        printFinalReport(evaluation, test: test, classNames: dataOptions.kind.classNames)
        if let out {
            try saveCheckpoint(network, record: record, evaluation: evaluation, to: out)
            logger.info("wrote \(out)")
        }
    }
}

public struct WorkerCommand: AsyncParsableCommand {
    public init() {}
    public static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Compute gradients for a coordinator on this machine's copy of the data, or host federated clients.")

    @Option(help: "The coordinator's ZeroMQ endpoint, e.g. tcp://10.0.0.1:5555.")
    var connect: String

    @Option(help: "Name shown in the coordinator's logs (default: host-pid).")
    var name: String?

    @Option(help: "Seconds to keep trying to reach the coordinator.")
    var registrationTimeout: Double = 30

    @Option(help: "Largest message accepted from the coordinator, in bytes.")
    var maxMessageBytes: Int64 = 256 << 20

    @Option(help: "Federated runs: host this many clients (default: an even share of the experiment's clients).")
    var clientsPerWorker: Int?

    @Option(help: ArgumentHelp("Federated runs: host exactly these client ids, e.g. 0-49.", valueName: "first-last"))
    var clients: String?

    @Option(help: "Federated runs: threads that train this worker's clients of a round in parallel.")
    var clientThreads: Int = 1

    /// `--clients first-last` as a range.
    private func clientRange() throws -> Range<Int>? {
        guard let clients else { return nil }
        let parts = clients.split(separator: "-", omittingEmptySubsequences: false).map { Int($0) }
        guard parts.count == 2, let first = parts[0], let last = parts[1], first >= 0, last >= first else {
            throw ValidationError("--clients takes first-last, e.g. 0-49, not '\(clients)'")
        }
        return first..<(last + 1)
    }

    public func validate() throws {
        _ = try clientRange()
        if let clientsPerWorker, clientsPerWorker < 1 { throw ValidationError("--clients-per-worker must be at least 1") }
        guard clients == nil || clientsPerWorker == nil else { throw ValidationError("give --clients or --clients-per-worker, not both") }
        guard clientThreads >= 1 else { throw ValidationError("--client-threads must be at least 1") }
    }

    @OptionGroup var dataOptions: DataOptions
    @OptionGroup var global: GlobalOptions

    public func run() async throws {
        followLauncher()
        let logger = try global.start("nn.worker")
        let (train, _) = try dataOptions.load(logger)
        let session = UInt64.random(in: 1...UInt64.max)
        let name = self.name ?? "\(ProcessInfo.processInfo.hostName)-\(getpid())"
        let client = try ZmqClient(connect: connect, identity: Array("\(name)#\(String(session, radix: 16))".utf8.prefix(200)),
                                   settings: ZmqSettings(maximumMessageBytes: maxMessageBytes))
        defer { client.close() }
        logger.info("worker \(name) connecting to \(connect)")
        let range = try clientRange()
        let worker = Worker(transport: client, data: train, fingerprint: train.fingerprint, session: session,
                            settings: .init(name: name, registrationTimeout: .seconds(registrationTimeout), clientFirst: range?.lowerBound,
                                            clientCount: range?.count ?? clientsPerWorker ?? 0, clientThreads: clientThreads),
                            logger: logger)
        let reason = try worker.run()
        logger.info("done after \(worker.tasksDone) tasks: \(reason)")
    }
}
