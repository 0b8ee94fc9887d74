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

    /// A round's matrix work, and the time it takes at a rate of sgemm.
    public struct Floor: Sendable {
        /// FLOP of a round's training, and of one evaluation of the test set.
        public var flops: Double
        public var evaluationFlops: Double
        public var cores: Int

        /// Seconds of a round's matrix work at `rate` FLOP/s a core on every core; with an evaluation every
        /// `evaluateEvery` rounds, its share.
        public func seconds(rate: Double, evaluatingEvery evaluateEvery: Int? = nil) -> Double {
            (flops + (evaluateEvery.map { evaluationFlops / Double($0) } ?? 0)) / (Double(cores) * rate)
        }
    }

    /// A mode's rounds against the floor.
    public struct Measurement: Sendable {
        /// Seconds a round: the median, or with evaluations the mean (the rounds that evaluate count in their share).
        public var seconds: Double
        /// The rounds' seconds over their floors' summed, each floor at the rate measured right after its round: the
        /// rate of a shared machine's cores varies from one second to the next, and pairing keeps that out.
        public var timesFloor: Double
        /// The mean floor a round, and the median bytes the coordinator received a round (over ZeroMQ).
        public var floorSeconds: Double
        public var received: Double?
    }

    /// The floor on `cores` cores, with evaluations on `testSamples` samples.
    public func floor(cores: Int, testSamples: Int) throws -> Floor {
        let strategy = try FederatedAveraging(experiment: experiment, trainingLabels: train.labels, classes: train.classes)
        let samples = Double(strategy.partitions.reduce(0) { $0 + $1.count }) / Double(experiment.clients)
            * Double(experiment.clientsPerRound) * Double(experiment.localEpochs)
        return Floor(flops: 6 * Double(strategy.network.parameterCount) * samples,
                     evaluationFlops: 2 * Double(strategy.network.parameterCount) * Double(testSamples), cores: cores)
    }

    /// The 1024³ sgemm rate of a core, FLOP/s, with `cores` threads each multiplying its own matrices once at the
    /// same time (cores that share a physical core, a power budget or a memory bus each do less than one alone).
    public final class SquareRate: @unchecked Sendable {
        private let products: [SquareProduct]
        public init(cores: Int) {
            products = (0..<cores).map { _ in SquareProduct(size: 1024) }
            _ = measure()  // the first products pay for faulting the result matrices in
        }

        public func measure() -> Double {
            let start = ContinuousClock.now
            DispatchQueue.concurrentPerform(iterations: products.count) { products[$0].run(1) }
            return products[0].flops / start.duration(to: .now).seconds
        }
    }

    /// The benchmark's rounds plus one warm-up round, not counted.
    private var timed: Experiment {
        var e = experiment
        e.rounds = rounds + 1
        return e
    }

    /// Collects the rounds after the warm-up one, each with the floor at the rate measured right after it.
    private final class Rounds {
        let floor: Floor, rate: SquareRate, evaluateEvery: Int?
        var times: [Double] = [], floors: [Double] = [], received: [Double] = []
        init(floor: Floor, evaluateEvery: Int?) {
            self.floor = floor; self.evaluateEvery = evaluateEvery
            rate = SquareRate(cores: floor.cores)
        }

        func add(_ round: FederatedRun.Round, seconds: Double) {
            guard round.report.round > 0 else { return }
            times.append(seconds)
            received.append(Double(round.report.bytesReceived))
            floors.append(floor.seconds(rate: rate.measure(), evaluatingEvery: evaluateEvery))
        }

        func measurement(mean: Bool = false, received withReceived: Bool = false) -> Measurement {
            let sum = times.reduce(0, +)
            return Measurement(seconds: mean ? sum / Double(times.count) : median(times), timesFloor: sum / floors.reduce(0, +),
                               floorSeconds: floors.reduce(0, +) / Double(floors.count), received: withReceived ? median(received) : nil)
        }
    }

    /// A round in simulation with `threads` client threads.
    public func simulation(threads: Int, floor: Floor) throws -> Measurement {
        let rounds = Rounds(floor: floor, evaluateEvery: nil)
        _ = try FederatedRun(experiment: timed, train: train, test: nil, logger: quiet).simulate(threads: threads) { rounds.add($0, seconds: $0.report.seconds) }
        return rounds.measurement()
    }

    /// A round in simulation on `threads` threads with the test evaluation (on the same threads) after every
    /// `evaluateEvery` rounds and the last: what a run takes a round, evaluation included.
    public func simulation(threads: Int, evaluatingOn test: Dataset, every evaluateEvery: Int, floor: Floor) throws -> Measurement {
        var experiment = timed
        experiment.evaluateEvery = evaluateEvery
        let rounds = Rounds(floor: floor, evaluateEvery: evaluateEvery)
        _ = try FederatedRun(experiment: experiment, train: train, test: test, logger: quiet).simulate(threads: threads) {
            rounds.add($0, seconds: $0.report.seconds + $0.evaluationSeconds)
        }
        return rounds.measurement(mean: true)
    }

    /// A round with `workers` worker processes over ZeroMQ, with the bytes the coordinator received; with
    /// `hostAggregation`, each worker sends the mean of its clients.
    public func zeroMQ(workers: Int, hostAggregation: Bool = false, floor: Floor) throws -> Measurement {
        var experiment = timed
        experiment.hostAggregation = hostAggregation
        let run = try FederatedRun(experiment: experiment, train: train, test: nil, logger: quiet)
        let server = try ZmqServer(bind: "tcp://127.0.0.1:*", settings: .coordinator(for: run.network))
        defer { server.close() }
        let children = WorkerProcesses(processes: try launch(workers, server.endpoint, nil))
        defer { children.stop() }
        let rounds = Rounds(floor: floor, evaluateEvery: nil)
        _ = try run.run(over: server, cluster: CoordinatorSettings(expectedWorkers: workers, timing: ClusterTiming(timeout: .seconds(10)))) {
            rounds.add($0, seconds: $0.report.seconds)
        }
        children.wait()
        return rounds.measurement(received: true)
    }
}
