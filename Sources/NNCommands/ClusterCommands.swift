import ArgumentParser
import CNNSystem
import Foundation
import Logging
import NNCluster
import NNCore
import NNData
import NNProtocol

/// Timing options shared by coordinator and worker.
struct ClusterTimingOptions: ParsableArguments {
    @Option(help: "Seconds between heartbeats to an idle peer.")
    var heartbeat: Double = 0.5

    @Option(help: "Seconds of silence after which a peer counts as lost.")
    var timeout: Double = 5

    @Option(help: "Seconds to wait for registration.")
    var registrationTimeout: Double = 60

    func validate() throws { _ = try timing }

    var timing: ClusterTiming {
        get throws {
            do {
                return try ClusterTiming(heartbeatSeconds: heartbeat, timeoutSeconds: timeout, registrationSeconds: registrationTimeout)
            } catch {
                throw ValidationError("--heartbeat, --timeout, --registration-timeout: \(error)")
            }
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

    @Option(help: "ZeroMQ endpoint to bind; beyond loopback (e.g. tcp://*:5555) only with --key and --allow, or --insecure.")
    var bind: String = "tcp://127.0.0.1:5555"

    @Option(help: "Workers to wait for before training starts.")
    var workers: Int

    @Option(help: "Stop (after writing the checkpoint) when fewer workers than this remain.")
    var minWorkers: Int = 1

    @OptionGroup var experimentOptions: ExperimentOptions
    @OptionGroup var training: TrainingOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var dataOptions: DataOptions
    @OptionGroup var timing: ClusterTimingOptions
    @Option(help: "Synchronous SGD: combine gradients robustly, for workers that may be wrong: \(RobustGradients.Rule.allCases.map(\.rawValue).joined(separator: ", ")) (median and trimmed-mean need 3 or more workers). Default: the exact mean.")
    var robust: RobustGradients.Rule?

    @Option(help: "With --robust: a gradient whose norm exceeds this many times the step's median norm is an outlier (bounded to it by norm-bound).")
    var outlierFactor: Float = 3

    @Option(help: "With --robust trimmed-mean: the fraction of values cut at each end of every coordinate.")
    var trim: Double = 0.2

    @Option(help: "With --robust: drop a worker whose gradients were outliers this many steps in a row (default: report it only).")
    var dropOutliersAfter: Int?

    @Option(help: "Synchronous SGD: how parameters and gradients travel, float32 (exact: the run equals one process) or bfloat16 (half the bytes, 8 significant bits; the optimizer keeps float32).")
    var vectors: VectorPrecision = .float32

    @Option(help: "Synchronous SGD: how the workers' gradients are summed: server (through the coordinator, which sends every worker the model each step), ring (among the workers, a ring all-reduce; each steps a replica, and a link's traffic does not grow with the workers), or halving-doubling (as ring, in 2·log₂ n exchanges instead of 2(n − 1) when the workers are a power of two; the ring's otherwise).")
    var topology: Topology = .parameterServer

    @OptionGroup var security: ServerSecurityOptions
    @OptionGroup var runState: RunStateOptions
    @OptionGroup var monitoring: MonitoringOptions
    @OptionGroup var global: GlobalOptions

    public func validate() throws {
        guard workers >= 1 else { throw ValidationError("--workers must be at least 1") }
        if security.key == nil, !security.insecure, !ZmqServer.isLocal(bind) {
            throw ValidationError("\(bind) is not loopback: give --key and --allow (make keys with `nn keygen`), or --insecure on a network you control")
        }
        guard (1...workers).contains(minWorkers) else { throw ValidationError("--min-workers must be between 1 and --workers") }
        if experimentOptions.config != nil, let first = training.given.first {
            throw ValidationError("with --config the experiment fixes the model, optimizer, batch, epochs and seed; drop \(first), or use --set-seed, --set-lr, --set-rounds")
        }
        _ = try experimentOptions.load()
        if let robust {
            guard experimentOptions.config == nil else { throw ValidationError("--robust is for synchronous SGD; a federated experiment names its aggregation in its strategy (fedmedian, fedtrimmedavg)") }
            let rule = RobustGradients(rule: robust)
            guard workers >= rule.minimumWorkers else { throw ValidationError("--robust \(robust.rawValue) needs --workers \(rule.minimumWorkers) or more") }
            guard outlierFactor >= 1, outlierFactor.isFinite else { throw ValidationError("--outlier-factor must be at least 1") }
            guard (0..<0.5).contains(trim) else { throw ValidationError("--trim must be in 0..<0.5") }
            if robust == .trimmedMean, Int(trim * Double(workers)) < 1 {
                throw ValidationError("--trim \(trim) cuts nothing with \(workers) workers (⌊trim × workers⌋ = 0): give at least \(String(format: "%.2f", 1 / Double(workers)))")
            }
        } else if dropOutliersAfter != nil {
            throw ValidationError("--drop-outliers-after goes with --robust")
        }
        if let dropOutliersAfter, dropOutliersAfter < 1 { throw ValidationError("--drop-outliers-after must be at least 1") }
        if vectors == .bfloat16, experimentOptions.config != nil {
            throw ValidationError("--vectors bfloat16 is for synchronous SGD; a federated experiment compresses its uploads with its compression key")
        }
        if topology.sumsAmongWorkers {
            let flag = "--topology \(topology.rawValue)"
            if experimentOptions.config != nil { throw ValidationError("\(flag) is for synchronous SGD; a federated experiment's clients train apart") }
            if robust != nil { throw ValidationError("\(flag) sums the gradients among the workers; --robust needs each one at the coordinator") }
            if vectors == .bfloat16 { throw ValidationError("\(flag) moves float32 chunks; --vectors bfloat16 is for the parameter server") }
        }
    }

    public func run() async throws {
        followLauncher()
        let logger = try global.start("nn.coordinator")
        monitoring.start(logger: logger)
        let secure = try security.load()
        let cluster = CoordinatorSettings(expectedWorkers: workers, minimumWorkers: minWorkers, timing: try timing.timing,
                                          stop: stopRequestOnSignals(),
                                          boundClients: secure?.allowlist.keys.compactMapValues { $0 } ?? [:], dropFlaggedAfter: dropOutliersAfter,
                                          compactVectors: vectors == .bfloat16, topology: topology)
        if let secure { logger.info("CURVE on: \(secure.allowlist.keys.count) worker key\(secure.allowlist.keys.count == 1 ? "" : "s") admitted") }
        let listen = { (network: Network) in
            try ZmqServer(bind: bind, settings: .coordinator(for: network), security: secure, insecure: security.insecure, logger: logger)
        }
        if let experiment = try experimentOptions.load() {
            try runFederated(experiment, cluster: cluster, listen: listen, logger: logger)
        } else {
            try runSynchronous(cluster: cluster, listen: listen, logger: logger)
        }
    }

    private func runFederated(_ experiment: Experiment, cluster: CoordinatorSettings, listen: (Network) throws -> ZmqServer, logger: Logger) throws {
        let dataOptions = try self.dataOptions.fixing(experiment)
        let (train, test) = try dataOptions.load(logger)
        try check(experiment.model, fits: train)
        let run = try FederatedRun(experiment: experiment, train: train, test: test, checkpoint: output.out,
                                   stopAtTarget: experimentOptions.stopAtTarget, runState: runState.settings(defaultEvery: 1), logger: logger)
        let server = try listen(run.network)
        defer { finish(closing: server.close, logger: logger) }
        logger.info("listening on \(server.endpoint); \(experiment.summary(parameters: run.network.parameterCount))")
        var log = try FederatedLog(experiment: experiment, output: output, network: run.network)
        let outcome = try run.run(over: server, cluster: cluster) { try log.record($0) }
        try log.finish(outcome)
        if let evaluation = outcome.last { printFinalReport(evaluation, test: test, classNames: dataOptions.kind.classNames) }
    }

    private func runSynchronous(cluster: CoordinatorSettings, listen: (Network) throws -> ZmqServer, logger: Logger) throws {
        var settings = try training.settings(dataset: dataOptions.kind.rawValue, checkpoint: output.out)
        settings.robust = robust.map { RobustGradients(rule: $0, factor: outlierFactor, trim: trim) }
        let (train, test) = try dataOptions.load(logger)
        try check(settings.model, fits: train)
        let run = SyncTrainingRun(settings: settings, cluster: cluster, train: train, test: test, runState: runState.settings(defaultEvery: 100),
                                  logger: logger)
        let server = try listen(run.network)
        defer { finish(closing: server.close, logger: logger) }
        logger.info("listening on \(server.endpoint); model \(settings.model.description), \(run.network.parameterCount) parameters; sync SGD, global batch \(run.globalBatch) (\(workers) × \(settings.batch)), \(settings.epochs) epochs")
        var metrics = try MetricsLog(output)
        var bar = ProgressBar(label: "epoch 1/\(settings.epochs)", total: run.stepsPerEpoch)
        let outcome = try run.run(over: server, onStep: { epoch, done in
            bar.update(done: done, detail: String(format: "loss %.4f acc %@", epoch.total.result.meanLoss, Format.percent(epoch.total.result.accuracy)))
        }, onEpoch: { report in
            bar.finish()
            print(epochLine(report, of: settings.epochs))
            let total = report.total
            try metrics.append(epochFields(report).merging([
                "compute_seconds": total.result.computeSeconds, "compute_seconds_summed": total.result.computeSecondsSummed,
                "communication_seconds": total.communicationSeconds,
                "aggregation_seconds": total.aggregationSeconds, "bytes_sent": total.bytesSent, "bytes_received": total.bytesReceived,
                "workers": total.workers, "rejected_messages": total.rejectedSoFar,
            ]) { $1 })
            try metrics.histograms(of: run.network, step: report.epoch)
            bar = ProgressBar(label: "epoch \(report.epoch + 1)/\(settings.epochs)", total: run.stepsPerEpoch)
        })
        printFinalReport(outcome.evaluation!, test: test, classNames: dataOptions.kind.classNames)
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

    @Option(help: "Seconds to keep asking a coordinator that went silent (restarted, resumed) to take this worker back.")
    var reconnectTimeout: Double = 60

    @Option(help: "Largest message accepted from the coordinator, in bytes.")
    var maxMessageBytes: Int64 = ZmqSettings.worker.maximumMessageBytes

    @Option(help: "Federated runs: host this many clients (default: an even share of the experiment's clients).")
    var clientsPerWorker: Int?

    @Option(help: ArgumentHelp("Federated runs: host exactly these client ids, e.g. 0-49.", valueName: "first-last"))
    var clients: String?

    @Option(help: "Federated runs: threads that train this worker's clients of a round in parallel.")
    var clientThreads: Int = 1

    @Option(help: "Synchronous SGD: threads that compute each task's gradient, each on a contiguous slice of its samples (see nn train --batch-threads).")
    var batchThreads: Int = 1

    @Option(help: "CPUs to run on, e.g. 0 or 2-3 (default: any); nn launch gives each worker CPUs of its own. A pinned ring member spins briefly for its partner's chunks on this host instead of sleeping at once.")
    var cpus: String?

    @Option(help: "Ring runs: the address of this machine where the other workers reach it (default: the one its packets to the coordinator leave from).")
    var ringHost: String?

    @Option(help: "Ring runs: the TCP port the other workers reach this one at (default: one the system picks), for a firewall to let through.")
    var ringPort: Int?

    /// `--clients first-last` as a range.
    private func clientRange() throws -> Range<Int>? {
        do { return try clients.map(Allowlist.clientRange) } catch { throw ValidationError("--clients: \(error)") }
    }

    public func validate() throws {
        for (flag, seconds) in [("--registration-timeout", registrationTimeout), ("--reconnect-timeout", reconnectTimeout)]
        where !(seconds > 0 && seconds <= 604_800) {
            throw ValidationError("\(flag) is \(seconds) s; it takes 0 < seconds ≤ 604800")
        }
        _ = try clientRange()
        if let clientsPerWorker, clientsPerWorker < 1 { throw ValidationError("--clients-per-worker must be at least 1") }
        guard clients == nil || clientsPerWorker == nil else { throw ValidationError("give --clients or --clients-per-worker, not both") }
        guard clientThreads >= 1 else { throw ValidationError("--client-threads must be at least 1") }
        try BatchThreads.validate(batchThreads)
        if let ringPort, !(1...65535).contains(ringPort) { throw ValidationError("--ring-port must be 1…65535") }
        if let cpus { _ = try CPUPinning.parse(cpus) }
    }

    @OptionGroup var dataOptions: DataOptions
    @OptionGroup var security: ClientSecurityOptions
    @OptionGroup var monitoring: MonitoringOptions
    @OptionGroup var global: GlobalOptions

    public func run() async throws {
        followLauncher()
        if let cpus { try CPUPinning.pin(try CPUPinning.parse(cpus)) }
        let logger = try global.start("nn.worker")
        BatchThreads.warnIfOversubscribed(batchThreads, blasThreads: global.threads, logger: logger)
        monitoring.start(logger: logger)
        let secure = try security.load()
        let (train, _) = try dataOptions.load(logger)
        let session = UInt64.random(in: 1...UInt64.max)
        let name = self.name ?? "\(ProcessInfo.processInfo.hostName)-\(getpid())"
        let client = try ZmqClient(connect: connect, identity: Array("\(name)#\(String(session, radix: 16))".utf8.prefix(200)),
                                   settings: ZmqSettings(maximumMessageBytes: maxMessageBytes), security: secure)
        defer { finish(closing: client.close, logger: logger) }
        logger.info("worker \(name) connecting to \(connect)\(secure == nil ? "" : " with CURVE, key \(secure!.keys.publicKey)")")
        let range = try clientRange()
        let worker = Worker(transport: client, data: train, session: session,
                            settings: .init(name: name, registrationTimeout: .seconds(registrationTimeout), reconnectTimeout: .seconds(reconnectTimeout),
                                            clientFirst: range?.lowerBound,
                                            clientCount: range?.count ?? clientsPerWorker ?? 0, clientThreads: clientThreads,
                                            stop: stopRequestOnSignals(), ringHost: { [ringHost, connect] in try ringHost ?? LocalAddress.towards(connect) },
                                            ringPort: ringPort ?? 0, batchThreads: batchThreads,
                                            ringSpin: cpus == nil ? .zero : .microseconds(100)),
                            logger: logger)
        let reason: String
        do {
            reason = try worker.run()
        } catch {
            // Hellos queued for a coordinator that is gone would hold the exit for the whole linger.
            client.dropUnsent()
            throw error
        }
        logger.info("done after \(worker.tasksDone) tasks: \(reason)")
    }
}

/// Closes a command's socket and ends the process's ZeroMQ, so that what it queued last (the coordinator's
/// shutdown notices) is delivered before the process exits.
private func finish(closing close: () -> Void, logger: Logger) {
    close()
    if !ZmqContext.terminate(within: .milliseconds(Int(ZmqSettings.worker.lingerMilliseconds) + 1000)) {
        logger.warning("ZeroMQ did not finish delivering within its linger; the last messages may be lost")
    }
}

/// How synchronous SGD's parameter and gradient vectors travel.
enum VectorPrecision: String, ExpressibleByArgument, CaseIterable {
    case float32, bfloat16
}

extension Topology: ExpressibleByArgument {}
