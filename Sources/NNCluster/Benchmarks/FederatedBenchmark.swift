import Foundation
import Logging
import NNCore
import NNData

/// Wall time per federated round (training and aggregation; in simulation also with the test evaluation) of an
/// experiment, in simulation and with this process coordinating worker processes over ZeroMQ on loopback, against
/// the floor: the round's matrix work, 6 × parameters × samples trained (and 2 × parameters × test samples for an
/// evaluation), at the 1024³ sgemm rate on every core.
public struct FederatedBenchmark {
    public let experiment: Experiment
    public let rounds: Int
    public let train: Dataset
    public let launch: WorkerLauncher
    private let quiet = Logger(label: "bench", factory: { _ in SwiftLogNoOpLogHandler() })

    public init(experiment: Experiment, rounds: Int, train: Dataset, launch: @escaping WorkerLauncher) {
        self.experiment = experiment; self.rounds = rounds; self.train = train; self.launch = launch
    }

    /// A round's matrix work and the rate it is measured against.
    public struct Floor: Sendable {
        /// FLOP of a round's training, and of one evaluation of the test set.
        public var flops: Double
        public var evaluationFlops: Double
        /// The 1024³ sgemm rate of one core, FLOP/s.
        public var sgemm: Double
        public var cores: Int

        /// Seconds of a round's matrix work on every core; with an evaluation every `evaluateEvery` rounds, its share.
        public func seconds(evaluatingEvery evaluateEvery: Int? = nil) -> Double {
            (flops + (evaluateEvery.map { evaluationFlops / Double($0) } ?? 0)) / (Double(cores) * sgemm)
        }
    }

    /// The floor on `cores` cores, with evaluations on `testSamples` samples.
    public func floor(cores: Int, testSamples: Int) throws -> Floor {
        let strategy = try FederatedAveraging(experiment: experiment, trainingLabels: train.labels, classes: train.classes)
        let samples = Double(strategy.partitions.reduce(0) { $0 + $1.count }) / Double(experiment.clients)
            * Double(experiment.clientsPerRound) * Double(experiment.localEpochs)
        let flops = 6 * Double(strategy.network.parameterCount) * samples
        let big = SquareProduct(size: 1024)
        big.run(1)
        let sgemm = big.flops / timePerCall(1) { big.run(1) }
        return Floor(flops: flops, evaluationFlops: 2 * Double(strategy.network.parameterCount) * Double(testSamples), sgemm: sgemm, cores: cores)
    }

    /// The benchmark's rounds plus one warm-up round, not counted.
    private var timed: Experiment {
        var e = experiment
        e.rounds = rounds + 1
        return e
    }

    /// Median seconds a round in simulation with `threads` client threads.
    public func simulation(threads: Int) throws -> Double {
        var times: [Double] = []
        _ = try FederatedRun(experiment: timed, train: train, test: nil, logger: quiet).simulate(threads: threads) { round in
            if round.report.round > 0 { times.append(round.report.seconds) }
        }
        return median(times)
    }

    /// Mean seconds a round in simulation on `threads` threads with the test evaluation (on the same threads) after
    /// every `evaluateEvery` rounds and the last: what a run takes a round, evaluation included.
    public func simulation(threads: Int, evaluatingOn test: Dataset, every evaluateEvery: Int) throws -> Double {
        var experiment = timed
        experiment.evaluateEvery = evaluateEvery
        var times: [Double] = []
        _ = try FederatedRun(experiment: experiment, train: train, test: test, logger: quiet).simulate(threads: threads) { round in
            if round.report.round > 0 { times.append(round.report.seconds + round.evaluationSeconds) }
        }
        return times.reduce(0, +) / Double(times.count)
    }

    /// Median seconds a round with `workers` worker processes over ZeroMQ, and the median bytes the coordinator
    /// received a round; with `hostAggregation`, each worker sends the mean of its clients.
    public func zeroMQ(workers: Int, hostAggregation: Bool = false) throws -> (seconds: Double, received: Double) {
        var experiment = timed
        experiment.hostAggregation = hostAggregation
        let run = try FederatedRun(experiment: experiment, train: train, test: nil, logger: quiet)
        let server = try ZmqServer(bind: "tcp://127.0.0.1:*", settings: .coordinator(for: run.network))
        defer { server.close() }
        let children = WorkerProcesses(processes: try launch(workers, server.endpoint, nil))
        defer { children.stop() }
        var times: [Double] = [], received: [Double] = []
        _ = try run.run(over: server, cluster: CoordinatorSettings(expectedWorkers: workers, timing: ClusterTiming(timeout: .seconds(10)))) { round in
            if round.report.round > 0 {
                times.append(round.report.seconds)
                received.append(Double(round.report.bytesReceived))
            }
        }
        children.wait()
        return (median(times), median(received))
    }
}
