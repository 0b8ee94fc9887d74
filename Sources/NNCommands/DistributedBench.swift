import Foundation
import Logging
import NNCluster
import NNCore
import NNData

/// Synchronous SGD over ZeroMQ on loopback: this process coordinates, `nn worker` processes compute. For each
/// worker count and per-worker batch it trains two epochs and reports the second (warm) one: samples/s, and the
/// mean step split into the slowest worker's compute, communication (the rest of the round trip) and
/// aggregation (averaging plus the optimizer). A single process at the same global batch is the reference.
struct DistributedBench {
    let spec: ModelSpec
    let optimizer: OptimizerSettings.Kind
    let dataOptions: DataOptions
    let logger: Logger

    func run() throws {
        let (train, _) = try dataOptions.load(logger)
        try check(spec, fits: train)
        print("nn bench --distributed: \(spec.description), \(optimizer.rawValue), MNIST training set, tcp loopback, 1 OpenBLAS thread per process")
        print("workers  batch/worker  global  samples/s  single-process samples/s  step ms  compute ms  communication ms  aggregation ms")
        for batch in [64, 256] {
            for workers in [1, 2] {
                let figures = try measure(workers: workers, batch: batch, data: train)
                let single = singleProcess(batch: workers * batch, data: train)
                print(String(format: "%7d  %12d  %6d  %9.0f  %24.0f  %7.3f  %10.3f  %16.3f  %14.3f",
                             workers, batch, workers * batch, figures.samplesPerSecond, single,
                             figures.step * 1e3, figures.compute * 1e3, figures.communication * 1e3, figures.aggregation * 1e3))
            }
        }
    }

    struct Figures { var samplesPerSecond, step, compute, communication, aggregation: Double }

    private func measure(workers: Int, batch: Int, data: Dataset) throws -> Figures {
        let network = Network(spec: spec, seed: 1)
        let trainer = Trainer(network: network, optimizer: OptimizerSettings(kind: optimizer), schedule: LearningRateSchedule(base: 1e-3), seed: 1)
        let strategy = SynchronousSGD(trainer: trainer, trainingSamples: data.sampleCount, globalBatch: workers * batch, epochs: 2)
        let server = try ZmqServer(bind: "tcp://127.0.0.1:*", settings: ZmqSettings(maximumMessageBytes: Int64(4 * network.parameterCount + 65_536)))
        defer { server.close() }
        let children = try startBenchWorkers(workers, endpoint: server.endpoint, dataOptions: dataOptions)
        defer { for child in children where child.isRunning { child.terminate() } }
        let coordinator = Coordinator(
            transport: server, strategy: strategy,
            configuration: RunConfiguration(mode: "sync", model: spec, seed: 1, globalBatch: workers * batch, heartbeatSeconds: 0.5, timeoutSeconds: 10),
            data: .init(fingerprint: data.fingerprint, inputWidth: data.inputWidth, classes: data.classes),
            settings: .init(expectedWorkers: workers, registrationTimeout: .seconds(60)),
            logger: Logger(label: "bench", factory: { _ in SwiftLogNoOpLogHandler() }))
        // The second (warm) epoch.
        var report = EpochReport(epoch: 2)
        try coordinator.run { round in
            if round.round >= strategy.roundsPerEpoch { report.add(round) }
            return true
        }
        for child in children { child.waitUntilExit() }
        let steps = Double(strategy.roundsPerEpoch)
        return Figures(samplesPerSecond: Double(report.result.samples) / report.seconds, step: report.seconds / steps,
                       compute: report.result.computeSeconds / steps, communication: report.communicationSeconds / steps,
                       aggregation: report.aggregationSeconds / steps)
    }

    /// Samples/s of one process training an epoch at `batch`, after a warm-up epoch.
    private func singleProcess(batch: Int, data: Dataset) -> Double {
        let trainer = Trainer(network: Network(spec: spec, seed: 1), optimizer: OptimizerSettings(kind: optimizer),
                              schedule: LearningRateSchedule(base: 1e-3), seed: 1)
        let buffer = BatchBuffer(capacity: batch, inputWidth: data.inputWidth)
        var rate = 0.0
        for epoch in 1...2 {
            let start = ContinuousClock.now
            _ = try? trainer.trainEpoch(data, order: epochOrder(seed: 1, epoch: epoch, count: data.sampleCount), batchSize: batch, buffer: buffer, epochs: 2)
            rate = Double(data.sampleCount) / start.duration(to: .now).seconds
        }
        return rate
    }
}

/// `nn worker` processes of this executable connected to `endpoint`, one OpenBLAS thread each, logging warnings only.
func startBenchWorkers(_ count: Int, endpoint: String, dataOptions: DataOptions) throws -> [Process] {
    let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
    return try (0..<count).map { i in
        let child = Process()
        child.executableURL = URL(fileURLWithPath: executable)
        child.arguments = ["worker", "--connect", endpoint, "--name", "bench-\(i)", "--log-level", "warning"] + dataOptions.arguments
        var environment = ProcessInfo.processInfo.environment
        environment["OPENBLAS_NUM_THREADS"] = "1"
        child.environment = environment
        try child.run()
        return child
    }
}
