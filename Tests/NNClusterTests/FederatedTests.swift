import Foundation
import NNCluster
import NNCore
import NNData
import NNProtocol
import TestSupport
import Testing

/// A small federated experiment over a subset of MNIST.
func smallExperiment(_ strategy: StrategySpec = StrategySpec(kind: .fedavg), partition: PartitionSpec = PartitionSpec(kind: .shards),
                     clients: Int = 10, fraction: Double = 0.5, localEpochs: Int = 2, localBatch: Int? = 20, rounds: Int = 4) throws -> Experiment {
    var experiment = Experiment(name: "small", model: try ModelSpec(widths: [784, 24, 10]), partition: partition, clients: clients,
                                fraction: fraction, localEpochs: localEpochs, localBatch: localBatch, learningRate: 0.05, rounds: rounds,
                                seed: 3, strategy: strategy)
    experiment.learningRateDecay = 0.99
    try experiment.validate()
    return experiment
}

@Suite(.serialized) struct FederatedTests {
    static let strategies: [StrategySpec] = [
        StrategySpec(kind: .fedavg), StrategySpec(kind: .fedprox, mu: 0.1), StrategySpec(kind: .fedavgm, serverLearningRate: 1, serverMomentum: 0.5),
        StrategySpec(kind: .fedadam, serverLearningRate: 0.01), StrategySpec(kind: .fedmedian), StrategySpec(kind: .fedtrimmedavg, trim: 0.2),
    ]

    /// The simulation and a coordinator with two workers (each hosting half the clients, one thread each while
    /// the simulation uses two) give the same parameters, bit for bit, for every strategy and over both transports.
    @Test(arguments: strategies, Wire.allCases)
    func simulationEqualsCoordinatorWithWorkers(strategy: StrategySpec, wire: Wire) throws {
        let data = try mnistSubset(3000).train
        let experiment = try smallExperiment(strategy)
        let (simulated, simulatedReports) = try simulate(experiment, data: data)
        let (distributed, reports) = try federated(experiment, data: data, workers: 2, wire: wire)
        #expect(simulated.parameters.array == distributed.parameters.array)
        #expect(reports.last?.rejectedSoFar == 0)
        #expect(reports.map(\.answered) == [5, 5, 5, 5] && simulatedReports.map(\.answered) == [5, 5, 5, 5])
        #expect(relativeDifference(Network(spec: experiment.model, seed: experiment.seed), simulated) > 1e-2, "training did not move the model")
    }

    /// With host aggregation, the simulation split among two hosts and a coordinator with two workers give the
    /// same parameters, bit for bit; the model is FedAvg's but for the order of the sums, and each host uploads
    /// one model a round instead of one per client.
    @Test(arguments: [StrategySpec(kind: .fedavg), StrategySpec(kind: .fedadam, serverLearningRate: 0.01)], Wire.allCases)
    func hostAggregationEqualsItsSimulation(strategy: StrategySpec, wire: Wire) throws {
        let data = try mnistSubset(3000).train
        var experiment = try smallExperiment(strategy)
        experiment.hostAggregation = true
        let (simulated, simulatedReports) = try simulate(experiment, data: data, hosts: 2)
        let (distributed, reports) = try federated(experiment, data: data, workers: 2, wire: wire)
        #expect(simulated.parameters.array == distributed.parameters.array)
        #expect(reports.map(\.answered) == [5, 5, 5, 5] && simulatedReports.map(\.answered) == [5, 5, 5, 5])
        #expect(reports.last?.rejectedSoFar == 0)

        experiment.hostAggregation = false
        let (flat, flatReports) = try simulate(experiment, data: data)
        let difference = relativeDifference(flat, simulated)
        #expect(difference < 1e-5, "relative difference \(difference)")
        #expect(relativeDifference(Network(spec: experiment.model, seed: experiment.seed), flat) > 1e-2, "training did not move the model")
        // Five clients' models a round, against at most one from each of the two hosts.
        for (hosted, each) in zip(simulatedReports, flatReports) {
            #expect(hosted.bytesReceived * 5 <= each.bytesReceived * 2, "\(hosted.bytesReceived) bytes against \(each.bytesReceived)")
        }
    }

    /// A host's update must be named by its first sampled client and carry all of their samples; the averaging
    /// rules alone take it, and never with privacy, secure aggregation or compression.
    @Test func hostAggregatesAreCheckedAndRestricted() throws {
        let data = try mnistSubset(1000).train
        var experiment = try smallExperiment()
        experiment.hostAggregation = true
        try experiment.validate()
        let strategy = try FederatedAveraging(experiment: experiment, trainingLabels: data.labels, classes: data.classes)
        let assignment = strategy.configure(round: 0, participants: [Participant(peer: PeerID([1]), clients: 0..<10)])[0]
        #expect(assignment.keys.count == 5)
        let samples = assignment.keys.reduce(0) { $0 + strategy.partitions[$1].count }
        let good = ClientUpdate(round: 0, client: UInt32(assignment.keys[0]), samples: UInt32(samples), correct: 0, lossSum: 1,
                                computeNanoseconds: 0, parameters: strategy.network.parameters.array, state: [])
        try strategy.check(good, against: assignment)
        #expect(strategy.keys(answeredBy: good, of: assignment) == assignment.keys)
        var oneClient = good; oneClient.samples = UInt32(strategy.partitions[assignment.keys[0]].count)
        var secondName = good; secondName.client = UInt32(assignment.keys[1])
        for bad in [oneClient, secondName] {
            #expect(throws: ClusterError.self) { try strategy.check(bad, against: assignment) }
        }

        for kind in [StrategySpec.Kind.fedmedian, .fedtrimmedavg] {
            var robust = try smallExperiment(StrategySpec(kind: kind))
            robust.hostAggregation = true
            #expect(throws: ExperimentError.self) { try robust.validate() }
        }
        var compressed = experiment, masked = experiment, private_ = experiment
        compressed.compression = CompressionSpec(kind: .int8)
        masked.secureAggregation = SecureAggregationSpec()
        private_.privacy = PrivacySpec(clip: 1, noiseMultiplier: 1)
        for other in [compressed, masked, private_] {
            do {
                try other.validate()
                Issue.record("accepted hostAggregation with \(other)")
            } catch {
                #expect("\(error)".contains("hostAggregation cannot be combined"), "\(error)")
            }
        }
        let encoded = try JSONEncoder().encode(experiment)
        #expect(try Experiment.decode(encoded, source: "round trip") == experiment)
        #expect(String(decoding: encoded, as: UTF8.self).contains("\"hostAggregation\":true"))

        // A worker that would answer client by client is refused at registration, with the reason.
        try expectRefused(by: try FederatedRun(experiment: experiment, train: data, test: nil, logger: quiet), data: data,
                          capabilities: Capabilities.all.subtracting(.hostAggregation),
                          reason: "the run needs host aggregation, which this worker does not offer")
    }

    /// A host whose one update is unusable has all of its sampled clients left out at once, not at the deadline.
    @Test func aBadHostUpdateLeavesOutItsClients() throws {
        let data = try mnistSubset(2000).train
        var experiment = try smallExperiment(rounds: 3)
        experiment.hostAggregation = true
        experiment.deadlineSeconds = 30
        let run = try FederatedRun(experiment: experiment, train: data, test: nil, logger: quiet)
        let sizes = run.strategy.partitions.map(\.count)
        let sampled = Locked<[[Int]]>([])
        let start = ContinuousClock.now
        let reports = try runBesideAPeer(run, data: data, wire: .inProcess) { message, _ in
            guard case .train(let request) = message else { return [] }
            sampled.update { $0.append(request.clients.map { Int($0.client) }) }
            // Its clients' samples, one too many.
            let samples = request.clients.reduce(1) { $0 + sizes[Int($1.client)] }
            return [.update(ClientUpdate(round: request.round, client: request.clients[0].client, samples: UInt32(samples), correct: 0,
                                         lossSum: 1, computeNanoseconds: 0, parameters: request.parameters, state: []))]
        }
        let seconds = start.duration(to: .now).seconds
        let missed = reports.map(\.missed).filter { !$0.isEmpty }
        #expect(!missed.isEmpty && missed == sampled.get(), "missed \(missed), sampled on the peer \(sampled.get())")
        #expect(reports.allSatisfy { $0.answered + $0.missed.count == $0.expected }, "\(reports.map { ($0.answered, $0.missed, $0.expected) })")
        #expect(reports.last?.rejectedSoFar == missed.count)
        #expect(seconds < 15, "the rounds waited \(seconds) s for clients whose host's update was refused")
    }

    /// FedAvg with C = 1, E = 1, B = ∞ on IID data is FedSGD: each round is one full-batch gradient step.
    @Test func fedAvgWithOneFullBatchEpochIsFedSGD() throws {
        let data = try mnistSubset(2000).train
        var experiment = try smallExperiment(partition: .iid, clients: 4, fraction: 1, localEpochs: 1, localBatch: nil, rounds: 3)
        experiment.learningRateDecay = 1
        let (federated, reports) = try simulate(experiment, data: data)
        #expect(reports.map(\.answered) == [4, 4, 4])

        let trainer = Trainer(network: Network(spec: experiment.model, seed: experiment.seed), optimizer: OptimizerSettings(kind: .sgd),
                              schedule: LearningRateSchedule(base: experiment.learningRate), seed: experiment.seed)
        let buffer = BatchBuffer(capacity: data.sampleCount, inputWidth: data.inputWidth)
        data.gather(Array(0..<data.sampleCount)[...], into: buffer.x.base, labels: buffer.labels)
        for _ in 0..<experiment.rounds {
            _ = try trainer.trainStep(x: buffer.x.base, labels: buffer.labels, batch: data.sampleCount, stepsPerEpoch: 1, totalSteps: 3)
        }
        let difference = relativeDifference(federated, trainer.network)
        #expect(difference < 1e-5, "relative difference \(difference)")
    }

    /// The same seed gives the same run; another seed another one.
    @Test func seedFixesTheRun() throws {
        let data = try mnistSubset(2000).train
        var experiment = try smallExperiment(rounds: 2)
        let a = try simulate(experiment, data: data, threads: 1).0.parameters.array
        let b = try simulate(experiment, data: data, threads: 3).0.parameters.array
        experiment.seed = 4
        let c = try simulate(experiment, data: data).0.parameters.array
        #expect(a == b)
        #expect(a != c)
    }

    /// With evaluateEvery = 3 over 7 rounds, rounds 3, 6 and 7 are evaluated, in simulation and with a coordinator
    /// (which evaluates on every core): the same figures, which are those of one network evaluating the final model.
    @Test func evaluateEveryEvaluatesTheDueRoundsAndTheLast() throws {
        let (train, test) = try mnistSubset(2000)
        var experiment = try smallExperiment(rounds: 7)
        experiment.evaluateEvery = 3
        var simulated: [FederatedRun.Round] = [], coordinated: [FederatedRun.Round] = []
        let simulation = try FederatedRun(experiment: experiment, train: train, test: test, logger: quiet)
        _ = try simulation.simulate(threads: 2) { simulated.append($0) }
        let run = try FederatedRun(experiment: experiment, train: train, test: test, logger: quiet)
        let (server, connect) = try makeNetwork(.inProcess, for: run.network)
        let threads = WorkerThreads()
        threads.start(transport: try connect("w"), data: train, name: "w", session: 1)
        _ = try run.run(over: server, cluster: CoordinatorSettings(expectedWorkers: 1, timing: quickTiming)) { coordinated.append($0) }
        #expect(threads.wait())
        for rounds in [simulated, coordinated] {
            #expect(rounds.map { $0.evaluation != nil } == [false, false, true, false, false, true, true])
        }
        let whole = run.network.evaluate(test)
        #expect(coordinated.last?.evaluation?.confusion == whole.confusion && simulated.last?.evaluation?.confusion == whole.confusion)
        #expect(abs(coordinated.last!.evaluation!.loss - whole.loss) < 1e-9)
    }

    /// A worker that stops answering mid-run: its clients miss the round's deadline and are left out (reported),
    /// the round still aggregates the others, and later rounds sample among the clients still hosted. With host
    /// aggregation the same holds, the silent host's sampled clients missing together.
    @Test(arguments: [false, true]) func stragglerIsLeftOutAtTheDeadline(hostAggregation: Bool) throws {
        let data = try mnistSubset(2000).train
        var experiment = try smallExperiment(rounds: 12)
        experiment.hostAggregation = hostAggregation
        let (_, reports) = try federated(experiment, data: data, workers: 2, wire: .inProcess, deadline: 2, timeout: 4) { round, clients in
            if round == 1 { clients[1].silence() }
        }
        let summary = "\(reports.map { ($0.workers, $0.answered, $0.missed) })"
        #expect(reports.count == 12)
        let hit = reports.dropFirst(2).first { !$0.missed.isEmpty }
        #expect(hit.map { $0.missed.allSatisfy { (5..<10).contains($0) } && $0.answered >= 1 } ?? false, "\(summary)")
        // In the rounds after the one in which the silent worker was dropped, only clients 0…4 are sampled, and none is lost.
        let after = reports.drop { $0.workers == 2 }.dropFirst()
        #expect(!after.isEmpty && after.allSatisfy { $0.missed.isEmpty && $0.answered == 5 }, "\(summary)")
        #expect(reports.last?.rejectedSoFar == 0)
    }

    /// A registered peer hosting clients 5…9 that answers its first train request with damaged updates (NaN,
    /// wrong sample count, short, another worker's client, a future round) and floods random frames: all are
    /// rejected or, once it is ignored, dropped unread; its clients are left out, and the model is exactly the one
    /// of a run in which that peer leaves at its first train request.
    @Test func garbageUpdatesFromARegisteredPeer() throws {
        let data = try mnistSubset(2000).train
        var experiment = try smallExperiment(rounds: 5)
        experiment.deadlineSeconds = 1
        func run(hostile: Bool) throws -> (parameters: [Float], rejected: Int, missed: [Int]) {
            let run = try FederatedRun(experiment: experiment, train: data, test: nil, logger: quiet)
            let sizes = run.strategy.partitions.map(\.count)
            let reports = try runBesideAPeer(run, data: data, wire: .zeroMQ, noise: hostile) { message, rng in
                guard case .train(let request) = message else { return [] }
                guard hostile else { return [.error(ErrorReport(code: .leaving, text: "peer is leaving"))] }
                return request.clients.map { work in
                    var u = ClientUpdate(round: request.round, client: work.client, samples: UInt32(sizes[Int(work.client)]),
                                         correct: 0, lossSum: 1, computeNanoseconds: 0, parameters: request.parameters, state: [])
                    switch rng.next(below: 5) {
                    case 0: u.parameters[3] = .nan
                    case 1: u.samples += 1
                    case 2: u.parameters.removeLast()
                    case 3: u.client = 0
                    default: u.round += 1
                    }
                    return .update(u)
                }
            }
            return (run.network.parameters.array, reports.last?.rejectedSoFar ?? 0, reports.flatMap(\.missed))
        }
        let garbage = try run(hostile: true), leaving = try run(hostile: false)
        // Enough rejected to have the peer ignored; how many more depends on how long the run lasts after that.
        #expect(garbage.rejected >= AdmissionLimits.badMessages, "only \(garbage.rejected) rejected")
        #expect(!garbage.missed.isEmpty && garbage.missed.allSatisfy { (5..<10).contains($0) }, "\(garbage.missed)")
        #expect(garbage.missed == leaving.missed)
        #expect(garbage.parameters == leaving.parameters)
    }

    /// Workers asking for clients outside the experiment or already hosted are refused with the reason.
    @Test func clientRangesAreAllocatedWithoutOverlap() throws {
        let data = try mnistSubset(1000).train
        let run = try FederatedRun(experiment: try smallExperiment(), train: data, test: nil, logger: quiet)
        let network = InProcessNetwork()
        let outcomes = Locked<[String: String]>([:])
        let threads = WorkerThreads()
        for (name, first, count) in [("first", 0, 5), ("overlapping", 3, 5), ("outside", 8, 5)] {
            threads.start(transport: network.connect(), data: data, name: name, session: UInt64(first + 1),
                          settings: .init(name: name, registrationTimeout: .seconds(5), reconnectTimeout: .seconds(1), clientFirst: first, clientCount: count)) { outcome in
                outcomes.update { $0[name] = outcome }
            }
            Thread.sleep(forTimeInterval: 0.2)   // register in this order
        }
        #expect(throws: ClusterError.self) {
            try run.run(over: network.server(), cluster: CoordinatorSettings(expectedWorkers: 2, timing: ClusterTiming(heartbeat: .milliseconds(50), registration: .seconds(3))))
        }
        #expect(threads.wait())
        let result = outcomes.get()
        #expect(result["overlapping"]?.contains("asks for clients 3…7, but first") ?? false, "\(result)")
        #expect(result["outside"]?.contains("outside the experiment's 0…9") ?? false, "\(result)")
        #expect(result["first"]?.hasPrefix("finished") ?? false, "\(result)")
    }

    /// Updates with the wrong sample count, counts, shape or non-finite values are refused; aggregation works
    /// on the results it is given and nothing else.
    @Test func malformedUpdatesAreRejected() throws {
        let data = try mnistSubset(1000).train
        let experiment = try smallExperiment()
        let strategy = try FederatedAveraging(experiment: experiment, trainingLabels: data.labels, classes: data.classes)
        let assignments = strategy.configure(round: 0, participants: [Participant(peer: PeerID([1]), clients: 0..<10)])
        let client = assignments[0].keys[0]
        let good = ClientUpdate(round: 0, client: UInt32(client), samples: UInt32(strategy.partitions[client].count), correct: 0, lossSum: 1,
                                computeNanoseconds: 0, parameters: strategy.network.parameters.array, state: [])
        var wrongCount = good; wrongCount.samples += 1
        var overCorrect = good; overCorrect.correct = good.samples + 1
        var short = good; short.parameters.removeLast()
        var poisoned = good; poisoned.parameters[7] = .nan
        for bad in [wrongCount, overCorrect, short, poisoned] {
            #expect(throws: (any Error).self) { try strategy.check(bad, against: assignments[0]) }
        }
        #expect(throws: ClusterError.self) { _ = try strategy.aggregate(round: 0, results: [], failures: [client]) }
        try strategy.check(good, against: assignments[0])
        _ = try strategy.aggregate(round: 0, results: [good], failures: [])
    }

    /// Each sampled client's train request carries E permutations of exactly its partition.
    @Test func trainRequestsCarryEachClientsEpochOrders() throws {
        let data = try mnistSubset(1000).train
        let experiment = try smallExperiment(localEpochs: 3)
        let strategy = try FederatedAveraging(experiment: experiment, trainingLabels: data.labels, classes: data.classes)
        let assignments = strategy.configure(round: 2, participants: [Participant(peer: PeerID([1]), clients: 0..<5), Participant(peer: PeerID([2]), clients: 5..<10)])
        #expect(assignments.flatMap(\.keys).count == experiment.clientsPerRound)
        for assignment in assignments {
            #expect(assignment.work.localEpochs == 3 && assignment.work.localBatch == 20 && assignment.work.clients.map { Int($0.client) } == assignment.keys)
            for work in assignment.work.clients {
                let partition = strategy.partitions[Int(work.client)].sorted()
                let size = partition.count
                #expect(work.order.count == 3 * size)
                let epochs = (0..<3).map { Array(work.order[($0 * size)..<(($0 + 1) * size)]) }
                for epoch in epochs { #expect(epoch.map(Int.init).sorted() == partition) }
                #expect(epochs[0] != epochs[1], "each epoch is reshuffled")
            }
        }
    }

    /// Median and trimmed mean ignore a minority of wild client models that drag the mean away.
    @Test func robustAggregationIgnoresOutliers() throws {
        let data = try mnistSubset(1000).train
        for kind in [StrategySpec.Kind.fedmedian, .fedtrimmedavg, .fedavg] {
            let experiment = try smallExperiment(StrategySpec(kind: kind), partition: .iid, fraction: 1)
            let strategy = try FederatedAveraging(experiment: experiment, trainingLabels: data.labels, classes: data.classes)
            let assignment = strategy.configure(round: 0, participants: [Participant(peer: PeerID([1]), clients: 0..<10)])[0]
            let base = strategy.network.parameters.array
            let updates = try (0..<10).map { client in
                let value: Float = client < 2 ? 1000 : Float(client) * 1e-3
                let update = ClientUpdate(round: 0, client: UInt32(client), samples: UInt32(strategy.partitions[client].count), correct: 0,
                                          lossSum: 0, computeNanoseconds: 0, parameters: base.map { _ in value }, state: [])
                try strategy.check(update, against: assignment)
                return update
            }
            _ = try strategy.aggregate(round: 0, results: updates, failures: [])
            let w = strategy.network.parameters.array[0]
            switch kind {
            case .fedmedian: #expect(abs(w - 0.0065) < 1e-6)       // middle two of 0.002…0.009, 1000, 1000
            case .fedtrimmedavg: #expect(abs(w - 0.0065) < 1e-6)   // mean of 0.004…0.009
            default: #expect(w > 100)
            }
        }
    }

    @Test func experimentFilesAreStrict() throws {
        let experiment = try smallExperiment()
        let encoded = try JSONEncoder().encode(experiment)
        #expect(try Experiment.decode(encoded, source: "round trip") == experiment)
        func expectError(_ json: String, _ words: String...) {
            do {
                _ = try Experiment.decode(Data(json.utf8), source: "test.json")
                Issue.record("accepted \(json)")
            } catch {
                for w in words { #expect("\(error)".contains(w), "\(error)") }
            }
        }
        let valid = String(decoding: encoded, as: UTF8.self)
        expectError(valid.replacingOccurrences(of: "\"rounds\"", with: "\"roudns\""), "unknown key 'roudns'")
        expectError(valid.replacingOccurrences(of: "\"kind\":\"fedavg\"", with: "\"kind\":\"fedavg\",\"mu\":1"), "takes no 'mu'")
        expectError(valid.replacingOccurrences(of: "\"fraction\":0.5", with: "\"fraction\":0"), "fraction")
        expectError(valid.replacingOccurrences(of: "\"localBatch\":20", with: "\"localBatch\":\"all\""), "localBatch")
        expectError(valid.replacingOccurrences(of: "\"model\":\"784-24-10\"", with: "\"model\":\"784-x-10\""), "model spec")
        expectError("{", "not a valid experiment")
        expectError("{\"name\":\"x\"}", "missing key")
    }

    /// Every experiment shipped under experiments/ is valid.
    @Test func shippedExperimentsLoad() throws {
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("experiments").path
        let files = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasSuffix(".json") }
        #expect(files.count >= 2)
        for file in files { _ = try Experiment.load(folder + "/" + file) }
    }
}
