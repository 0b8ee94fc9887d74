import Foundation
import NNCluster
import NNCore
import NNData
import NNProtocol
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

/// Runs `experiment` in one process; returns the global model and the round reports.
func simulate(_ experiment: Experiment, data: Dataset, threads: Int = 2) throws -> (Network, [RoundReport]) {
    let strategy = try FederatedAveraging(experiment: experiment, trainingLabels: data.labels, classes: data.classes)
    let simulation = try Simulation(strategy: strategy, host: try ClientHost(experiment: experiment, data: data, clients: 0..<experiment.clients, threads: threads))
    var reports: [RoundReport] = []
    try simulation.run { reports.append($0); return true }
    return (strategy.network, reports)
}

/// Runs `experiment` with a coordinator and `workers` worker threads, each hosting an even share of the
/// clients, over `wire`. `onRound` may act on the workers' transports after each round.
func federated(_ experiment: Experiment, data: Dataset, workers: Int, wire: Wire, deadline: Double? = nil, timeout: Double = 5,
               onRound: ((Int, [SilenceableClient]) -> Void)? = nil) throws -> (Network, Coordinator, [RoundReport]) {
    var experiment = experiment
    if let deadline { experiment.deadlineSeconds = deadline }
    let strategy = try FederatedAveraging(experiment: experiment, trainingLabels: data.labels, classes: data.classes)
    let (server, connect) = try makeNetwork(wire, parameterCount: strategy.network.parameterCount)
    let coordinator = Coordinator(
        transport: server, strategy: strategy,
        configuration: RunConfiguration(experiment: experiment, heartbeatSeconds: 0.05, timeoutSeconds: timeout),
        data: .init(fingerprint: data.fingerprint, inputWidth: data.inputWidth, classes: data.classes),
        settings: .init(expectedWorkers: workers, registrationTimeout: .seconds(20), heartbeatInterval: .milliseconds(50), workerTimeout: .seconds(timeout)),
        logger: quiet)
    let clients = try (0..<workers).map { SilenceableClient(try connect(UInt64($0 + 1))) }
    let group = DispatchGroup()
    for i in 0..<workers {
        let worker = Worker(transport: clients[i], data: data, fingerprint: data.fingerprint, session: UInt64(i + 1),
                            settings: .init(name: "worker-\(i)", registrationTimeout: .seconds(20)), logger: quiet)
        nonisolated(unsafe) let w = worker
        group.enter()
        Thread { _ = try? w.run(); group.leave() }.start()
    }
    var reports: [RoundReport] = []
    try coordinator.run { report in
        reports.append(report)
        onRound?(report.round, clients)
        return true
    }
    #expect(group.wait(timeout: .now() + 20) == .success, "workers did not stop after shutdown")
    return (strategy.network, coordinator, reports)
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
        let (distributed, coordinator, reports) = try federated(experiment, data: data, workers: 2, wire: wire)
        #expect(simulated.parameters.array == distributed.parameters.array)
        #expect(coordinator.rejected == 0)
        #expect(reports.map(\.answered) == [5, 5, 5, 5] && simulatedReports.map(\.answered) == [5, 5, 5, 5])
        #expect(relativeDifference(Network(spec: experiment.model, seed: experiment.seed), simulated) > 1e-2, "training did not move the model")
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

    /// A worker that stops answering mid-run: its clients miss the round's deadline and are left out (reported),
    /// the round still aggregates the others, and later rounds sample among the clients still hosted.
    @Test func stragglerIsLeftOutAtTheDeadline() throws {
        let data = try mnistSubset(2000).train
        let experiment = try smallExperiment(rounds: 12)
        let (_, coordinator, reports) = try federated(experiment, data: data, workers: 2, wire: .inProcess, deadline: 2, timeout: 4) { round, clients in
            if round == 1 { clients[1].silence() }
        }
        let summary = "\(reports.map { ($0.workers, $0.answered, $0.missed) })"
        #expect(reports.count == 12)
        let hit = reports.dropFirst(2).first { !$0.missed.isEmpty }
        #expect(hit.map { $0.missed.allSatisfy { (5..<10).contains($0) } && $0.answered >= 1 } ?? false, "\(summary)")
        // In the rounds after the one in which the silent worker was dropped, only clients 0…4 are sampled, and none is lost.
        let after = reports.drop { $0.workers == 2 }.dropFirst()
        #expect(!after.isEmpty && after.allSatisfy { $0.missed.isEmpty && $0.answered == 5 }, "\(summary)")
        #expect(coordinator.rejected == 0)
    }

    /// A registered peer hosting clients 5…9 that answers every train request with damaged updates (NaN, wrong
    /// sample count, short, another worker's client, a future round) and floods random frames: all are rejected,
    /// its clients are left out, and the model is exactly the one of a run in which that peer never answers.
    @Test func garbageUpdatesFromARegisteredPeer() throws {
        let data = try mnistSubset(2000).train
        var experiment = try smallExperiment(rounds: 5)
        experiment.deadlineSeconds = 1
        func run(hostile: Bool) throws -> (parameters: [Float], rejected: Int, missed: [Int]) {
            let strategy = try FederatedAveraging(experiment: experiment, trainingLabels: data.labels, classes: data.classes)
            let settings = ZmqSettings(maximumMessageBytes: 1 << 22)
            let server = try ZmqServer(bind: "tcp://127.0.0.1:*", settings: settings)
            let coordinator = Coordinator(
                transport: server, strategy: strategy,
                configuration: RunConfiguration(experiment: experiment, heartbeatSeconds: 0.05, timeoutSeconds: 5),
                data: .init(fingerprint: data.fingerprint, inputWidth: 784, classes: 10),
                settings: .init(expectedWorkers: 2, registrationTimeout: .seconds(20), heartbeatInterval: .milliseconds(50), workerTimeout: .seconds(5)),
                logger: quiet)
            let honest = Worker(transport: try ZmqClient(connect: server.endpoint, identity: Array("honest".utf8), settings: settings),
                                data: data, fingerprint: data.fingerprint, session: 1,
                                settings: .init(name: "honest", clientFirst: 0, clientCount: 5), logger: quiet)
            let peer = try ZmqClient(connect: server.endpoint, identity: Array("peer".utf8), settings: settings)
            let stop = Locked(false)
            let group = DispatchGroup()
            nonisolated(unsafe) let w = honest, p = peer
            let sizes = strategy.partitionSizes
            group.enter()
            Thread { _ = try? w.run(); group.leave() }.start()
            group.enter()
            Thread {
                var rng = SeededRandom(seed: 5)
                func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) } }
                try? p.send(WireCodec.encode(.hello(Hello(session: 2, name: "peer", dataFingerprint: data.fingerprint, inputWidth: 784,
                                                           classes: 10, clientFirst: 5, clientCount: 5))))
                var lastBeat = ContinuousClock.now
                while !stop.get() {
                    if ContinuousClock.now - lastBeat > .milliseconds(50) {
                        try? p.send(WireCodec.encode(.heartbeat(Heartbeat(session: 2))))
                        lastBeat = .now
                    }
                    if let frames = try? p.receive(timeout: .milliseconds(1)), case .train(let request)? = try? WireCodec.decode(frames), hostile {
                        for client in request.clients {
                            var u = ClientUpdate(round: request.round, client: client, samples: UInt32(sizes[Int(client)]),
                                                 correct: 0, lossSum: 1, computeNanoseconds: 0, parameters: request.parameters, state: [])
                            switch rng.next(below: 5) {
                            case 0: u.parameters[3] = .nan
                            case 1: u.samples += 1
                            case 2: u.parameters.removeLast()
                            case 3: u.client = 0
                            default: u.round += 1
                            }
                            try? p.send(WireCodec.encode(.update(u)))
                        }
                    }
                    if hostile {
                        var frames = (0..<(1 + rng.next(below: 3))).map { _ in Frame.bytes(bytes(rng.next(below: 64))) }
                        if rng.next(below: 2) == 0 {
                            frames[0] = .bytes([0x4E, 0x4E, WireCodec.version, UInt8(rng.next(below: 11))] + bytes(rng.next(below: 40)))
                        }
                        try? p.send(frames)
                    }
                }
                group.leave()
            }.start()
            var missed: [Int] = []
            try coordinator.run { report in
                missed += report.missed
                return true
            }
            stop.set(true)
            #expect(group.wait(timeout: .now() + 20) == .success)
            peer.close()
            server.close()
            return (strategy.network.parameters.array, coordinator.rejected, missed)
        }
        let garbage = try run(hostile: true), mute = try run(hostile: false)
        #expect(garbage.rejected > 100, "only \(garbage.rejected) rejected")
        #expect(!garbage.missed.isEmpty && garbage.missed.allSatisfy { (5..<10).contains($0) }, "\(garbage.missed)")
        #expect(garbage.missed == mute.missed)
        #expect(garbage.parameters == mute.parameters)
    }

    /// Workers asking for clients outside the experiment or already hosted are refused with the reason.
    @Test func clientRangesAreAllocatedWithoutOverlap() throws {
        let data = try mnistSubset(1000).train
        let experiment = try smallExperiment()
        let strategy = try FederatedAveraging(experiment: experiment, trainingLabels: data.labels, classes: data.classes)
        let network = InProcessNetwork()
        let coordinator = Coordinator(
            transport: network.server(), strategy: strategy,
            configuration: RunConfiguration(experiment: experiment, heartbeatSeconds: 0.05, timeoutSeconds: 5),
            data: .init(fingerprint: data.fingerprint, inputWidth: 784, classes: 10),
            settings: .init(expectedWorkers: 2, registrationTimeout: .seconds(3), heartbeatInterval: .milliseconds(50)),
            logger: quiet)
        let outcomes = Locked<[String: String]>([:])
        let group = DispatchGroup()
        for (name, first, count) in [("first", 0, 5), ("overlapping", 3, 5), ("outside", 8, 5)] {
            let worker = Worker(transport: network.connect(), data: data, fingerprint: data.fingerprint, session: UInt64(first + 1),
                                settings: .init(name: name, registrationTimeout: .seconds(5), clientFirst: first, clientCount: count), logger: quiet)
            nonisolated(unsafe) let w = worker
            group.enter()
            Thread {
                let outcome: String
                do { outcome = "finished: \(try w.run())" } catch { outcome = "\(error)" }
                outcomes.set(outcomes.get().merging([name: outcome]) { $1 })
                group.leave()
            }.start()
            Thread.sleep(forTimeInterval: 0.2)   // register in this order
        }
        #expect(throws: ClusterError.self) { try coordinator.run { _ in true } }
        coordinator.shutdown(reason: "test over")
        #expect(group.wait(timeout: .now() + 20) == .success)
        let result = outcomes.get()
        #expect(result["overlapping"]?.contains("asks for clients 3…7, but first") ?? false, "\(result)")
        #expect(result["outside"]?.contains("outside the experiment's 0…9") ?? false, "\(result)")
        #expect(result["first"]?.hasPrefix("finished") ?? false, "\(result)")
    }

    /// Updates with the wrong sample count, shape or non-finite values are refused, and nothing is kept.
    @Test func malformedUpdatesAreRejected() throws {
        let data = try mnistSubset(1000).train
        let experiment = try smallExperiment()
        let strategy = try FederatedAveraging(experiment: experiment, trainingLabels: data.labels, classes: data.classes)
        let assignments = strategy.configure(round: 0, participants: [Participant(peer: PeerID([1]), clients: 0..<10)])
        let client = assignments[0].keys[0]
        let good = ClientUpdate(round: 0, client: UInt32(client), samples: UInt32(strategy.partitionSizes[client]), correct: 0, lossSum: 1,
                                computeNanoseconds: 0, parameters: strategy.network.parameters.array, state: [])
        var wrongCount = good; wrongCount.samples += 1
        var short = good; short.parameters.removeLast()
        var poisoned = good; poisoned.parameters[7] = .nan
        for bad in [wrongCount, short, poisoned] {
            #expect(throws: ClusterError.self) { try strategy.accept(.update(bad), key: client, for: assignments[0]) }
        }
        #expect(throws: ClusterError.self) { _ = try strategy.aggregate(round: 0) }
        try strategy.accept(.update(good), key: client, for: assignments[0])
        _ = try strategy.aggregate(round: 0)
    }

    /// Median and trimmed mean ignore a minority of wild client models that drag the mean away.
    @Test func robustAggregationIgnoresOutliers() throws {
        let data = try mnistSubset(1000).train
        for kind in [StrategySpec.Kind.fedmedian, .fedtrimmedavg, .fedavg] {
            let experiment = try smallExperiment(StrategySpec(kind: kind), partition: .iid, fraction: 1)
            let strategy = try FederatedAveraging(experiment: experiment, trainingLabels: data.labels, classes: data.classes)
            let assignment = strategy.configure(round: 0, participants: [Participant(peer: PeerID([1]), clients: 0..<10)])[0]
            let base = strategy.network.parameters.array
            for client in 0..<10 {
                let value: Float = client < 2 ? 1000 : Float(client) * 1e-3
                let update = ClientUpdate(round: 0, client: UInt32(client), samples: UInt32(strategy.partitionSizes[client]), correct: 0,
                                          lossSum: 0, computeNanoseconds: 0, parameters: base.map { _ in value }, state: [])
                try strategy.accept(.update(update), key: client, for: assignment)
            }
            _ = try strategy.aggregate(round: 0)
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
