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
        abstract: "Coordinate distributed training: shard the data over the workers, aggregate, evaluate, checkpoint.")

    @Option(help: "ZeroMQ endpoint to bind.")
    var bind: String = "tcp://*:5555"

    @Option(help: "Workers to wait for before training starts.")
    var workers: Int

    @Option(help: "Stop (after writing the checkpoint) when fewer workers than this remain.")
    var minWorkers: Int = 1

    @Option(help: "Training mode: sync (synchronous SGD).")
    var mode: Mode = .sync

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var optimization: OptimizationOptions
    @OptionGroup var dataOptions: DataOptions
    @OptionGroup var timing: ClusterTimingOptions
    @OptionGroup var runOptions: RunOptions
    @OptionGroup var global: GlobalOptions

    public func validate() throws {
        guard workers >= 1 else { throw ValidationError("--workers must be at least 1") }
        guard (1...workers).contains(minWorkers) else { throw ValidationError("--min-workers must be between 1 and --workers") }
    }

    public func run() async throws {
        followLauncher()
        let logger = try global.start("nn.coordinator")
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
            settings: .init(expectedWorkers: workers, minimumWorkers: minWorkers, registrationTimeout: .seconds(timing.registrationTimeout),
                            heartbeatInterval: .seconds(timing.heartbeat), workerTimeout: .seconds(timing.timeout)),
            logger: logger)

        var metrics = MetricsLog(path: runOptions.metrics)
        var evaluation = network.evaluate(test)
        var bar = ProgressBar(label: "epoch 1/\(epochs)", total: strategy.roundsPerEpoch)
        let record = TrainingRecord(dataset: dataOptions.dataset.rawValue, mode: mode.rawValue, workers: workers, optimizer: optimization.settings,
                                    schedule: optimization.learningRate, clip: optimization.clip, batch: batch, epochs: epochs, seed: seed)
        do {
            try coordinator.run(onRound: { report, round in
                bar.update(done: round, detail: String(format: "loss %.4f acc %@", report.meanLoss, Format.percent(report.accuracy)))
            }, onEpoch: { report in
                bar.finish()
                evaluation = network.evaluate(test)
                print(epochLine(report.epoch, of: epochs, loss: report.meanLoss, accuracy: report.accuracy, test: evaluation,
                                samplesPerSecond: Double(report.samples) / report.seconds, seconds: report.seconds))
                try metrics.append([
                    "epoch": report.epoch, "train_loss": report.meanLoss, "train_accuracy": report.accuracy,
                    "test_loss": evaluation.loss, "test_accuracy": evaluation.accuracy,
                    "samples_per_second": Double(report.samples) / report.seconds, "seconds": report.seconds,
                    "compute_seconds": report.computeSeconds, "communication_seconds": report.communicationSeconds,
                    "aggregation_seconds": report.aggregationSeconds, "bytes_sent": report.bytesSent,
                    "bytes_received": report.bytesReceived, "workers": report.workers,
                    "learning_rate": Double(trainer.learningRate), "rejected_messages": coordinator.rejected,
                ])
                bar = ProgressBar(label: "epoch \(report.epoch + 1)/\(epochs)", total: strategy.roundsPerEpoch)
            })
        } catch {
            coordinator.shutdown(reason: "the coordinator stopped: \(error)")
            if let out, trainer.step > 0 {
                try saveCheckpoint(network, record: record, evaluation: network.evaluate(test), to: out)
                logger.error("stopped after \(trainer.step) steps; wrote the model so far to \(out)")
            }
            throw error
        }
        printFinalReport(evaluation, test: test, classNames: dataOptions.dataset.classNames)
        if let out {
            try saveCheckpoint(network, record: record, evaluation: evaluation, to: out)
            logger.info("wrote \(out)")
        }
    }
}

public struct WorkerCommand: AsyncParsableCommand {
    public init() {}
    public static let configuration = CommandConfiguration(
        commandName: "worker", abstract: "Compute gradients for a coordinator on this machine's copy of the data.")

    @Option(help: "The coordinator's ZeroMQ endpoint, e.g. tcp://10.0.0.1:5555.")
    var connect: String

    @Option(help: "Name shown in the coordinator's logs (default: host-pid).")
    var name: String?

    @Option(help: "Seconds to keep trying to reach the coordinator.")
    var registrationTimeout: Double = 30

    @Option(help: "Largest message accepted from the coordinator, in bytes.")
    var maxMessageBytes: Int64 = 256 << 20

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
        let worker = Worker(transport: client, data: train, fingerprint: train.fingerprint, session: session,
                            settings: .init(name: name, registrationTimeout: .seconds(registrationTimeout)), logger: logger)
        let reason = try worker.run()
        logger.info("done after \(worker.tasksDone) tasks: \(reason)")
    }
}
