import Foundation
import Logging
import NNCore
import NNData

/// Synchronous SGD over ZeroMQ on loopback: this process coordinates, worker processes compute. For a worker
/// count and per-worker batch it trains two epochs and reports the second (warm) one: samples/s, and the mean
/// step split into the slowest worker's compute, communication (the rest of the round trip) and aggregation
/// (averaging plus the optimizer). One process (`singleProcess`, on one thread or several batch threads) is
/// the reference.
public struct DistributedBenchmark {
    public let model: ModelSpec
    public let optimizer: OptimizerSettings
    public let train: Dataset
    public let launch: WorkerLauncher

    public init(model: ModelSpec, optimizer: OptimizerSettings, train: Dataset, launch: @escaping WorkerLauncher) {
        self.model = model; self.optimizer = optimizer; self.train = train; self.launch = launch
    }

    public struct Figures: Sendable {
        public var samplesPerSecond, singleProcessSamplesPerSecond, step, compute, communication, aggregation: Double
    }

    private func settings(batch: Int) -> TrainingSettings {
        TrainingSettings(model: model, optimizer: optimizer, schedule: LearningRateSchedule(base: 1e-3), seed: 1, batch: batch, epochs: 2,
                         dataset: "mnist")
    }

    /// `curve`: encrypted and authenticated, with throwaway keys.
    public func measure(workers: Int, batch: Int, curve: Bool = false, topology: Topology = .parameterServer) throws -> Figures {
        let cluster = CoordinatorSettings(expectedWorkers: workers, timing: ClusterTiming(timeout: .seconds(10)), topology: topology)
        let run = SyncTrainingRun(settings: settings(batch: batch), cluster: cluster, train: train, test: nil,
                                  logger: Logger(label: "bench", factory: { _ in SwiftLogNoOpLogHandler() }))
        let keys = curve ? try ThrowawayKeys(workers: workers) : nil
        defer { keys?.remove() }
        let server = try ZmqServer(bind: "tcp://127.0.0.1:*", settings: .coordinator(for: run.network), security: try keys?.serverSecurity())
        defer { server.close() }
        let children = WorkerProcesses(processes: try launch(workers, server.endpoint, keys))
        defer { children.stop() }
        let outcome = try run.run(over: server)
        children.wait()
        let warm = outcome.epochs[1], steps = Double(run.stepsPerEpoch)
        return Figures(samplesPerSecond: warm.samplesPerSecond, singleProcessSamplesPerSecond: singleProcess(batch: workers * batch),
                       step: warm.total.seconds / steps, compute: warm.total.result.computeSeconds / steps,
                       communication: warm.total.communicationSeconds / steps, aggregation: warm.total.aggregationSeconds / steps)
    }

    /// Samples/s of one process training an epoch at `batch` on `threads` threads, after a warm-up epoch.
    public func singleProcess(batch: Int, threads: Int = 1) -> Double {
        let s = settings(batch: batch)
        let trainer = Trainer(network: Network(spec: model, seed: 1), optimizer: s.optimizer, schedule: s.schedule, seed: 1, threads: threads)
        let buffer = BatchBuffer(capacity: batch, inputWidth: train.inputWidth)
        var rate = 0.0
        for epoch in 1...2 {
            let start = ContinuousClock.now
            _ = try? trainer.trainEpoch(train, order: epochOrder(seed: 1, epoch: epoch, count: train.sampleCount), batchSize: batch, buffer: buffer, epochs: 2)
            rate = Double(train.sampleCount) / start.duration(to: .now).seconds
        }
        return rate
    }
}
