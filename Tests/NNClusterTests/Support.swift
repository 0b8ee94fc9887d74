import Foundation
import Logging
import NNCluster
import NNCore
import NNData
import NNProtocol
import Testing

let quiet = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

/// The first `count` MNIST training images, and the test set's first 500.
func mnistSubset(_ count: Int) throws -> (train: Dataset, test: Dataset) {
    let directory = DatasetKind.mnist.defaultDirectory()
    let (train, test) = try DatasetKind.mnist.load(from: directory)
    return (train.subset(Array(0..<count)), test.subset(Array(0..<500)))
}

enum Wire: String, CaseIterable, Sendable { case inProcess, zeroMQ }

/// A server and a way to make clients, over either transport.
func makeNetwork(_ wire: Wire, parameterCount: Int) throws -> (server: ServerTransport, client: (UInt64) throws -> ClientTransport) {
    switch wire {
    case .inProcess:
        let network = InProcessNetwork()
        return (network.server(), { _ in network.connect() })
    case .zeroMQ:
        let settings = ZmqSettings(maximumMessageBytes: Int64(8 * parameterCount + 4096))
        let server = try ZmqServer(bind: "tcp://127.0.0.1:*", settings: settings)
        let endpoint = server.endpoint
        return (server, { session in try ZmqClient(connect: endpoint, identity: Array("w\(session)".utf8), settings: settings) })
    }
}

struct SyncRun {
    var spec: ModelSpec
    var optimizer = OptimizerSettings(kind: .adam)
    var lr: Float = 0.01
    var seed: UInt64 = 1
    var perWorkerBatch = 25
    var epochs = 2

    func trainer() -> Trainer {
        Trainer(network: Network(spec: spec, seed: seed), optimizer: optimizer, schedule: LearningRateSchedule(base: lr), seed: seed)
    }

    /// One process at batch N·b over the epoch orders the coordinator uses.
    func singleProcess(workers: Int, data: Dataset) throws -> Network {
        let trainer = trainer()
        let batch = workers * perWorkerBatch
        let buffer = BatchBuffer(capacity: batch, inputWidth: data.inputWidth)
        for epoch in 1...epochs {
            _ = try trainer.trainEpoch(data, order: epochOrder(seed: seed, epoch: epoch, count: data.sampleCount),
                                       batchSize: batch, buffer: buffer, epochs: epochs)
        }
        return trainer.network
    }

    /// A coordinator and N worker threads over `wire`. `sabotage` may act on worker i's transport once it has
    /// done some tasks (e.g. close it, as a killed process would).
    /// `lateWorkers` more join when round `joinAt` is done (registration waits only for the first `workers`).
    func distributed(workers: Int, data: Dataset, wire: Wire, settings: Coordinator.Settings? = nil, lateWorkers: Int = 0, joinAt: Int = 0,
                     onRound: ((Int, [SilenceableClient]) -> Void)? = nil) throws -> (Network, Coordinator, [EpochReport]) {
        let trainer = trainer()
        let (server, connect) = try makeNetwork(wire, parameterCount: trainer.network.parameterCount)
        let strategy = SynchronousSGD(trainer: trainer, trainingSamples: data.sampleCount, globalBatch: workers * perWorkerBatch, epochs: epochs)
        let configuration = RunConfiguration(mode: "sync", model: spec, seed: seed, globalBatch: workers * perWorkerBatch,
                                             heartbeatSeconds: 0.05, timeoutSeconds: 2)
        let fingerprint = data.fingerprint
        let coordinator = Coordinator(
            transport: server, strategy: strategy, configuration: configuration,
            data: .init(fingerprint: fingerprint, inputWidth: data.inputWidth, classes: data.classes),
            settings: settings ?? .init(expectedWorkers: workers, registrationTimeout: .seconds(20), heartbeatInterval: .milliseconds(50),
                                        workerTimeout: .seconds(2)),
            logger: quiet)
        let clients = try (0..<(workers + lateWorkers)).map { SilenceableClient(try connect(UInt64($0 + 1))) }
        let group = DispatchGroup()
        func start(_ i: Int) {
            let worker = Worker(transport: clients[i], data: data, fingerprint: fingerprint, session: UInt64(i + 1),
                                settings: .init(name: "worker-\(i)", registrationTimeout: .seconds(20)), logger: quiet)
            nonisolated(unsafe) let w = worker
            group.enter()
            // A thread of its own: a worker blocks in receive, and pool threads may start late.
            Thread { _ = try? w.run(); group.leave() }.start()
        }
        for i in 0..<workers { start(i) }
        var round = 0
        var reports: [EpochReport] = []
        try coordinator.run { report in
            round += 1
            if round == joinAt { for i in workers..<(workers + lateWorkers) { start(i) } }
            onRound?(round, clients)
            if report.round % strategy.roundsPerEpoch == 0 { reports.append(EpochReport(epoch: reports.count + 1)) }
            reports[reports.count - 1].add(report)
            return true
        }
        #expect(group.wait(timeout: .now() + 20) == .success, "workers did not stop after shutdown")
        return (trainer.network, coordinator, reports)
    }
}

/// Largest parameter difference relative to the largest parameter magnitude.
func relativeDifference(_ a: Network, _ b: Network) -> Double {
    let x = a.parameters.array, y = b.parameters.array
    let scale = y.map { Double(abs($0)) }.max()!
    return zip(x, y).map { Double(abs($0 - $1)) }.max()! / scale
}

/// Wraps a worker's transport so a test can make the worker go silent, as a hung or cut-off process does,
/// without touching its socket from another thread.
final class SilenceableClient: ClientTransport, @unchecked Sendable {
    private let inner: ClientTransport
    private let lock = NSLock()
    private var silent = false

    init(_ inner: ClientTransport) { self.inner = inner }

    func silence() { lock.lock(); silent = true; lock.unlock() }
    private var isSilent: Bool { lock.lock(); defer { lock.unlock() }; return silent }

    func send(_ frames: [Frame]) throws {
        if !isSilent { try inner.send(frames) }
    }

    func receive(timeout: Duration) throws -> [Frame]? {
        if isSilent {
            Thread.sleep(forTimeInterval: timeout.seconds)
            return nil
        }
        return try inner.receive(timeout: timeout)
    }
}
