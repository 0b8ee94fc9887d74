import ArgumentParser
import Foundation
import Logging
import NNCluster
import NNCore
import NNData

/// Measures the training step against the BLAS it runs on. All figures come from one run, interleaved, so
/// the ratios hold on a noisy machine even when the absolute numbers move.
public struct Bench: AsyncParsableCommand {
    public init() {}
    public static let configuration = CommandConfiguration(
        abstract: "Training throughput and effective GFLOP/s against cblas_sgemm on the same shapes and on 1024³.")

    @OptionGroup var modelOptions: ModelOptions

    @Option(help: "Optimizer: sgd, momentum, nesterov, adam, adamw.")
    var optimizer: OptimizerSettings.Kind = .adam

    @Option(help: "Mini-batch size.")
    var batch: Int = 64

    @Option(help: "Measurement rounds; each times the step, the same-shape products and 1024³ once (default 5; with --federated, federated rounds, default 20).")
    var rounds: Int?

    @Option(help: "Seconds per measurement.")
    var seconds: Double = 0.5

    @Flag(help: "Measure synchronous SGD instead, at batch 64 and 256 per worker, against one process at that batch: 2 batch threads in one process, and 1 and 2 worker processes over ZeroMQ on loopback, through the coordinator and in a ring (--batch, --rounds and --seconds do not apply).")
    var distributed = false

    @Flag(help: "Measure federated rounds instead: simulation with 1 and 2 client threads (with 2, also with the test evaluation every round and every 10 rounds), and 2 worker processes over ZeroMQ, with and without host aggregation.")
    var federated = false

    @Option(help: ArgumentHelp("With --federated: the experiment (default: FedAvg on the MNIST 2NN, K = 100, C = 0.1, E = 1, B = 10).", valueName: "file"))
    var config: String?

    @OptionGroup var dataOptions: DataOptions
    @OptionGroup var global: GlobalOptions

    public func validate() throws {
        guard rounds.map({ $0 >= 1 }) ?? true else { throw ValidationError("--rounds must be at least 1") }
        guard !(federated && distributed) else { throw ValidationError("give --federated or --distributed, not both") }
        guard config == nil || federated else { throw ValidationError("--config goes with --federated") }
    }

    /// The FedAvg paper's MNIST 2NN cell: K = 100, C = 0.1, E = 1, B = 10, IID.
    static func paperCell() throws -> Experiment {
        var experiment = Experiment(name: "mnist-2nn-iid", model: try ModelSpec(widths: [784, 200, 200, 10]), partition: .iid, clients: 100,
                                    fraction: 0.1, localEpochs: 1, localBatch: 10, learningRate: 0.2, rounds: 1)
        experiment.targetAccuracy = 0.97
        return experiment
    }

    public func run() async throws {
        let logger = try global.start("nn.bench")
        if federated {
            let experiment = try config.map { try Experiment.load($0) } ?? Self.paperCell()
            try runFederated(experiment, logger: logger)
        } else if distributed {
            try runDistributed(logger: logger)
        } else {
            try runStep()
        }
    }

    private func runStep() throws {
        let rounds = self.rounds ?? 5
        let spec = try modelOptions.spec()
        let bench = StepBenchmark(spec: spec, optimizer: OptimizerSettings(kind: optimizer), batch: batch, source: Dataset.synthetic(spec: spec))
        try bench.warmUp()
        print("nn bench: \(spec.description), batch \(batch), \(optimizer.rawValue), OpenBLAS threads \(global.threads), OpenBLAS kernels \(BLAS.kernels)")
        print(String(format: "matrix work per step: %.2f MFLOP (%d products)\n", bench.products.flops / 1e6, bench.productCount))
        print("round  samples/s   step GFLOP/s   same-shape sgemm GFLOP/s   1024³ sgemm GFLOP/s   step/1024³")
        var figures: [StepBenchmark.Figures] = []
        for round in 1...rounds {
            let f = try bench.measure(seconds: seconds)
            figures.append(f)
            print(String(format: "%5d  %9.0f   %12.1f   %24.1f   %19.1f   %9.1f%%", round, f.samplesPerSecond, f.stepGflops, f.sameShapeGflops,
                         f.squareGflops, 100 * f.stepGflops / f.squareGflops))
        }
        let samples = median(figures.map(\.samplesPerSecond)), step = median(figures.map(\.stepGflops))
        let shape = median(figures.map(\.sameShapeGflops)), square = median(figures.map(\.squareGflops))
        print(String(format: "median %9.0f   %12.1f   %24.1f   %19.1f   %9.1f%%", samples, step, shape, square,
                     100 * median(figures.map { $0.stepGflops / $0.squareGflops })))
        print(String(format: "\ntraining step: %.1f%% of the same-shape sgemm rate; an epoch of 60,000 samples takes %.2fs", 100 * step / shape, 60_000 / samples))
        print("peak resident memory: \(peakResidentBytes() >> 20) MiB")
    }

    private func runDistributed(logger: Logger) throws {
        let spec = try modelOptions.spec()
        let (train, _) = try dataOptions.load(logger)
        try check(spec, fits: train)
        let bench = DistributedBenchmark(model: spec, optimizer: OptimizerSettings(kind: optimizer), train: train, launch: benchWorkers)
        print("nn bench --distributed: \(spec.description), \(optimizer.rawValue), MNIST training set, tcp loopback (plain, and CURVE-encrypted), 1 OpenBLAS thread per process, OpenBLAS kernels \(BLAS.kernels)")
        print("The reference for each per-worker batch b is one process at batch b, measured first; threads: one process at batch workers × b on that many threads.\n")
        print("topology  wire   workers  batch/worker  global  samples/s  × one process at b  single-process samples/s at global  step ms  compute ms  communication ms  aggregation ms")
        for batch in [64, 256] {
            let reference = bench.singleProcess(batch: batch)
            print(String(format: "one process at batch %d: %.0f samples/s", batch, reference))
            for workers in [1, 2] {
                func line(_ kind: String, _ wire: String, _ samplesPerSecond: Double, _ rest: String) {
                    print(kind.padding(toLength: 8, withPad: " ", startingAt: 0) + "  " + wire.padding(toLength: 5, withPad: " ", startingAt: 0)
                          + String(format: "  %7d  %12d  %6d  %9.0f  %18.2f", workers, batch, workers * batch, samplesPerSecond, samplesPerSecond / reference) + rest)
                }
                if workers > 1 {
                    line("threads", "-", bench.singleProcess(batch: workers * batch, threads: workers), "")
                }
                // The variants one after the other, so that each group shares the machine's state.
                // Halving-doubling among two is the ring's exchange, so it has no row of its own here.
                for topology in [Topology.parameterServer, .ring] {
                    for curve in [false, true] {
                        let f = try bench.measure(workers: workers, batch: batch, curve: curve, topology: topology)
                        line(topology.rawValue, curve ? "CURVE" : "plain", f.samplesPerSecond,
                             String(format: "  %35.0f  %7.3f  %10.3f  %16.3f  %14.3f", f.singleProcessSamplesPerSecond, f.step * 1e3, f.compute * 1e3,
                                    f.communication * 1e3, f.aggregation * 1e3))
                    }
                }
            }
        }
    }

    private func runFederated(_ experiment: Experiment, logger: Logger) throws {
        let (train, test) = try dataOptions.fixing(experiment).load(logger)
        try check(experiment.model, fits: train)
        let rounds = self.rounds ?? 20
        let bench = FederatedBenchmark(experiment: experiment, rounds: rounds, train: train, launch: benchWorkers)
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let floor = try bench.floor(cores: cores, testSamples: test.sampleCount)
        print("nn bench --federated: \(experiment.name), \(experiment.model.description), K = \(experiment.clients), C = \(experiment.fraction), E = \(experiment.localEpochs), B = \(experiment.localBatch.map(String.init) ?? "∞"); \(rounds) rounds after one warm-up round, medians; OpenBLAS kernels \(BLAS.kernels)")
        print(String(format: "matrix work per round: %.2f GFLOP, and %.2f GFLOP to evaluate the test set; the floor: that work at the 1024³ sgemm rate of all %d cores at once, measured after each round (%.1f GFLOP/s a core at the start)\n",
                     floor.flops / 1e9, floor.evaluationFlops / 1e9, cores, FederatedBenchmark.SquareRate(cores: cores).measure() / 1e9))
        print("mode                                  round ms   rounds/min   floor ms   × floor")
        func line(_ mode: String, _ m: FederatedBenchmark.Measurement) {
            print(mode.padding(toLength: 36, withPad: " ", startingAt: 0)
                  + String(format: "  %8.1f   %10.0f   %8.1f   %7.2f", m.seconds * 1e3, 60 / m.seconds, m.floorSeconds * 1e3, m.timesFloor)
                  + (m.received.map { String(format: "   %.1f MB up a round", $0 / 1e6) } ?? ""))
        }
        for threads in [1, 2] {
            line("simulation, \(threads) client thread\(threads == 1 ? "" : "s")", try bench.simulation(threads: threads, floor: floor))
        }
        for every in [1, 10] {
            line("  evaluating every \(every == 1 ? "round" : "\(every) rounds")", try bench.simulation(threads: 2, evaluatingOn: test, every: every, floor: floor))
        }
        line("2 worker processes over ZeroMQ", try bench.zeroMQ(workers: 2, floor: floor))
        var aggregated = experiment
        aggregated.hostAggregation = true
        if (try? aggregated.validate()) != nil {
            line("  with host aggregation", try bench.zeroMQ(workers: 2, hostAggregation: true, floor: floor))
        }
    }

    /// `nn worker` processes of this executable, one OpenBLAS thread each, on CPUs of their own as `nn launch`
    /// gives them, logging warnings only.
    private var benchWorkers: WorkerLauncher {
        let dataArguments = dataOptions.arguments
        return { count, endpoint, keys in
            let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
            let cpus = CPUPinning.shares(workers: count, threads: 1)
            return try (0..<count).map { i in
                let child = Process()
                child.executableURL = URL(fileURLWithPath: executable)
                child.arguments = ["worker", "--connect", endpoint, "--name", "bench-\(i)", "--log-level", "warning"] + dataArguments
                    + CPUPinning.arguments(cpus?[i]) + (keys?.workerArguments(i) ?? [])
                var environment = ProcessInfo.processInfo.environment
                environment["OPENBLAS_NUM_THREADS"] = "1"
                child.environment = environment
                try child.run()
                return child
            }
        }
    }
}
