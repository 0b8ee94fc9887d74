import Foundation
import Logging
import NNCluster
import NNCore
import NNData

/// Wall time per federated round (training and aggregation, no evaluation) of an experiment: in simulation
/// with one and with two client threads, and with this process coordinating two `nn worker` processes over
/// ZeroMQ on loopback. The floor is the round's matrix work, 6 × parameters × samples trained, at the 1024³
/// sgemm rate measured in the same run on every core.
struct FederatedBench {
    let experiment: Experiment
    let rounds: Int
    let dataOptions: DataOptions
    let logger: Logger

    func run() throws {
        let (train, _) = try dataOptions.load(logger)
        try check(experiment.model, fits: train)
        let strategy = try FederatedAveraging(experiment: experiment, trainingLabels: train.labels, classes: train.classes)
        let samplesPerRound = Double(strategy.partitionSizes.reduce(0, +)) / Double(experiment.clients) * Double(experiment.clientsPerRound) * Double(experiment.localEpochs)
        let flops = 6 * Double(strategy.network.parameterCount) * samplesPerRound
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let big = SquareProduct(size: 1024)
        big.run(1)
        let sgemm = big.flops / timePerCall(1) { big.run(1) }
        let floor = flops / (Double(cores) * sgemm)
        print("nn bench --federated: \(experiment.name), \(experiment.model.description), K = \(experiment.clients), C = \(experiment.fraction), E = \(experiment.localEpochs), B = \(experiment.localBatch.map(String.init) ?? "∞"); \(rounds) rounds after one warm-up round, medians")
        print(String(format: "matrix work per round: %.2f GFLOP; 1024³ sgemm %.1f GFLOP/s a core; floor on %d cores: %.1f ms a round\n",
                     flops / 1e9, sgemm / 1e9, cores, floor * 1e3))
        print("mode                                  round ms   rounds/min   × floor")
        func line(_ mode: String, _ seconds: Double) {
            print(mode.padding(toLength: 36, withPad: " ", startingAt: 0) + String(format: "  %8.1f   %10.0f   %7.2f", seconds * 1e3, 60 / seconds, seconds / floor))
        }
        for threads in [1, 2] {
            line("simulation, \(threads) client thread\(threads == 1 ? "" : "s")", try simulation(train, threads: threads))
        }
        line("2 worker processes over ZeroMQ", try zeroMQ(train))
    }

    private func simulation(_ train: Dataset, threads: Int) throws -> Double {
        var experiment = self.experiment
        experiment.rounds = rounds + 1
        let strategy = try FederatedAveraging(experiment: experiment, trainingLabels: train.labels, classes: train.classes)
        let host = try ClientHost(experiment: experiment, data: train, clients: 0..<experiment.clients, threads: threads)
        var times: [Double] = []
        try Simulation(strategy: strategy, host: host).run { report in
            if report.round > 0 { times.append(report.seconds) }
            return true
        }
        return median(times)
    }

    private func zeroMQ(_ train: Dataset) throws -> Double {
        var experiment = self.experiment
        experiment.rounds = rounds + 1
        let strategy = try FederatedAveraging(experiment: experiment, trainingLabels: train.labels, classes: train.classes)
        let server = try ZmqServer(bind: "tcp://127.0.0.1:*",
                                   settings: ZmqSettings(maximumMessageBytes: Int64(4 * strategy.network.parameterCount + 4 * experiment.clients + 65_536)))
        defer { server.close() }
        let children = try startBenchWorkers(2, endpoint: server.endpoint, dataOptions: dataOptions)
        defer { for child in children where child.isRunning { child.terminate() } }
        let coordinator = Coordinator(
            transport: server, strategy: strategy,
            configuration: RunConfiguration(experiment: experiment, heartbeatSeconds: 0.5, timeoutSeconds: 10),
            data: .init(fingerprint: train.fingerprint, inputWidth: train.inputWidth, classes: train.classes),
            settings: .init(expectedWorkers: 2, registrationTimeout: .seconds(60)),
            logger: Logger(label: "bench", factory: { _ in SwiftLogNoOpLogHandler() }))
        var times: [Double] = []
        try coordinator.run { report in
            if report.round > 0 { times.append(report.seconds) }
            return true
        }
        for child in children { child.waitUntilExit() }
        return median(times)
    }
}
