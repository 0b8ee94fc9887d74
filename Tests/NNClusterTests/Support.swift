import Foundation
import Logging
import NNCluster
import NNCore
import NNData
import NNProtocol
import TestSupport
import Testing

let quiet = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

/// The first `count` MNIST training images, and the test set's first 500.
func mnistSubset(_ count: Int) throws -> (train: Dataset, test: Dataset) {
    let (train, test) = try DatasetKind.mnist.load(from: DatasetKind.mnist.defaultDirectory())
    return (train.subset(Array(0..<count)), test.subset(Array(0..<500)))
}

enum Wire: String, CaseIterable, Sendable { case inProcess, zeroMQ, curve }

/// Key pairs for tests: a coordinator's and eight workers'.
let testKeys = (coordinator: try! CurveKeyPair.generate(), workers: (0..<8).map { _ in try! CurveKeyPair.generate() })

/// A server for a run of `network` and a way to connect clients to it (by routing id), over any transport;
/// with CURVE, each client gets the next of the test keys.
func makeNetwork(_ wire: Wire, for network: Network) throws -> (server: ServerTransport, connect: (String) throws -> ClientTransport) {
    switch wire {
    case .inProcess:
        let inProcess = InProcessNetwork()
        return (inProcess.server(), { _ in inProcess.connect() })
    case .zeroMQ:
        let server = try ZmqServer(bind: "tcp://127.0.0.1:*", settings: .coordinator(for: network))
        let endpoint = server.endpoint
        return (server, { name in try ZmqClient(connect: endpoint, identity: Array(name.utf8), settings: .worker) })
    case .curve:
        let allowlist = Allowlist(Dictionary(uniqueKeysWithValues: testKeys.workers.map { ($0.publicKey, nil) }))
        let server = try ZmqServer(bind: "tcp://127.0.0.1:*", settings: .coordinator(for: network),
                                   security: ServerSecurity(keys: testKeys.coordinator, allowlist: allowlist), logger: quiet)
        let endpoint = server.endpoint
        var next = 0
        return (server, { name in
            defer { next += 1 }
            return try ZmqClient(connect: endpoint, identity: Array(name.utf8), settings: .worker,
                                 security: ClientSecurity(keys: testKeys.workers[next % 8], serverKey: testKeys.coordinator.publicKey))
        })
    }
}

/// Test timing: quick heartbeats, so failures are found in a fraction of a second.
let quickTiming = ClusterTiming(heartbeat: .milliseconds(50), timeout: .seconds(2), registration: .seconds(20))

/// Workers, or peers that pose as workers, each on a thread of its own (a worker blocks in receive, and pool
/// threads may start late).
final class WorkerThreads: @unchecked Sendable {
    private let group = DispatchGroup()

    /// Runs `body` on a new thread.
    func start(_ body: @escaping @Sendable () -> Void) {
        group.enter()
        Thread { [group] in body(); group.leave() }.start()
    }

    /// A worker over `transport` until it is told to stop (or fails); `outcome` gets how it ended.
    func start(transport: ClientTransport, data: Dataset, name: String, session: UInt64, settings: Worker.Settings? = nil,
               outcome: (@Sendable (String) -> Void)? = nil) {
        let worker = Worker(transport: transport, data: data, session: session,
                            settings: settings ?? .init(name: name, registrationTimeout: .seconds(20), reconnectTimeout: .seconds(1)), logger: quiet)
        nonisolated(unsafe) let w = worker
        start {
            let ended: String
            do { ended = "finished: \(try w.run())" } catch { ended = "\(error)" }
            outcome?(ended)
        }
    }

    /// True when every thread ended within `seconds`.
    func wait(seconds: Double = 20) -> Bool { group.wait(timeout: .now() + seconds) == .success }
}

struct SyncRun {
    var spec: ModelSpec
    var optimizer = OptimizerSettings(kind: .adam)
    var lr: Float = 0.01
    var seed: UInt64 = 1
    var perWorkerBatch = 25
    var epochs = 2
    /// Parameters and gradients travel as bfloat16.
    var compactVectors = false
    var topology = Topology.parameterServer
    /// A ring's steps per round.
    var ringSteps = 64
    /// Threads of the one process (`singleProcess`), or of each worker (`distributed`), that cut each batch.
    var batchThreads = 1

    /// A small model's run in a ring of rounds of `steps`.
    static func ring(steps: Int) throws -> SyncRun {
        var run = SyncRun(spec: try ModelSpec(widths: [784, 32, 10]))
        run.topology = .ring
        run.ringSteps = steps
        return run
    }

    func settings(batch: Int) -> TrainingSettings {
        TrainingSettings(model: spec, optimizer: optimizer, schedule: LearningRateSchedule(base: lr), seed: seed, batch: batch, epochs: epochs,
                         dataset: "mnist")
    }

    /// One process at batch N·b over the same epoch orders.
    func singleProcess(workers: Int, data: (train: Dataset, test: Dataset)) throws -> Network {
        var settings = settings(batch: workers * perWorkerBatch)
        settings.batchThreads = batchThreads
        let run = LocalTrainingRun(settings: settings, train: data.train, test: data.test, logger: quiet)
        _ = try run.run()
        return run.network
    }

    /// A coordinator and N worker threads over `wire`. `onRound` may act on the workers' transports after each
    /// round, given the steps done (from 1), e.g. silence one as a hung process would be; `lateWorkers` more join
    /// after step `joinAt` (registration waits only for the first `workers`); a worker's read that finds nothing
    /// from the coordinator takes `slowPolls` (a ring member reads between steps, so each step takes that long).
    func distributed(workers: Int, data: Dataset, wire: Wire, timing: ClusterTiming = quickTiming, minimumWorkers: Int = 1,
                     lateWorkers: Int = 0, joinAt: Int = 0, slowPolls: Duration = .zero,
                     onRound: ((Int, [SilenceableClient]) -> Void)? = nil) throws -> (Network, SyncTrainingRun.Outcome) {
        let run = SyncTrainingRun(settings: settings(batch: perWorkerBatch),
                                  cluster: CoordinatorSettings(expectedWorkers: workers, minimumWorkers: minimumWorkers, timing: timing,
                                                               compactVectors: compactVectors, topology: topology, ringSteps: ringSteps),
                                  train: data, test: nil, logger: quiet)
        let (server, connect) = try makeNetwork(wire, for: run.network)
        let clients = try (0..<(workers + lateWorkers)).map { SilenceableClient(try connect("w\($0 + 1)"), slowPolls: slowPolls) }
        let threads = WorkerThreads()
        func start(_ i: Int) {
            threads.start(transport: clients[i], data: data, name: "worker-\(i)", session: UInt64(i + 1),
                          settings: .init(name: "worker-\(i)", registrationTimeout: .seconds(20), reconnectTimeout: .seconds(1), batchThreads: batchThreads))
        }
        for i in 0..<workers { start(i) }
        let outcome = try run.run(over: server, onStep: { epoch, done in
            let round = (epoch.epoch - 1) * run.stepsPerEpoch + done
            if round == joinAt { for i in workers..<(workers + lateWorkers) { start(i) } }
            onRound?(round, clients)
        })
        #expect(threads.wait(), "workers did not stop after shutdown")
        return (run.network, outcome)
    }
}

/// Runs `experiment` in one process; returns the global model and the round reports.
func simulate(_ experiment: Experiment, data: Dataset, threads: Int = 2, hosts: Int = 1) throws -> (Network, [RoundReport]) {
    let run = try FederatedRun(experiment: experiment, train: data, test: nil, logger: quiet)
    var reports: [RoundReport] = []
    _ = try run.simulate(threads: threads, hosts: hosts) { reports.append($0.report) }
    return (run.network, reports)
}

/// Runs `experiment` with a coordinator and `workers` worker threads, worker i hosting the i-th even share of
/// the clients, over `wire`. `onRound` may act on the workers' transports after each round.
func federated(_ experiment: Experiment, data: Dataset, workers: Int, wire: Wire, deadline: Double? = nil, timeout: Double = 5,
               onRound: ((Int, [SilenceableClient]) -> Void)? = nil) throws -> (Network, [RoundReport]) {
    var experiment = experiment
    if let deadline { experiment.deadlineSeconds = deadline }
    let run = try FederatedRun(experiment: experiment, train: data, test: nil, logger: quiet)
    let (server, connect) = try makeNetwork(wire, for: run.network)
    let clients = try (0..<workers).map { SilenceableClient(try connect("w\($0 + 1)")) }
    let threads = WorkerThreads()
    // Worker i hosts the i-th even share of the clients, whichever registers first.
    let share = (experiment.clients + workers - 1) / workers
    for i in 0..<workers {
        threads.start(transport: clients[i], data: data, name: "worker-\(i)", session: UInt64(i + 1),
                      settings: .init(name: "worker-\(i)", registrationTimeout: .seconds(20), reconnectTimeout: .seconds(1), clientFirst: i * share,
                                      clientCount: min(share, experiment.clients - i * share)))
    }
    var reports: [RoundReport] = []
    let timing = ClusterTiming(heartbeat: .milliseconds(50), timeout: .seconds(timeout), registration: .seconds(20))
    _ = try run.run(over: server, cluster: CoordinatorSettings(expectedWorkers: workers, timing: timing)) { round in
        reports.append(round.report)
        onRound?(round.report.round, clients)
    }
    #expect(threads.wait(), "workers did not stop after shutdown")
    return (run.network, reports)
}

/// Runs `run` over `wire` with a worker hosting clients 0…4 and a registered peer hosting 5…9 that answers each
/// message with `answer` (and floods random frames once it has work, with `noise`); returns the round reports.
func runBesideAPeer(_ run: FederatedRun, data: Dataset, wire: Wire, noise: Bool = false,
                    answer: @escaping @Sendable (Message, inout SeededRandom) -> [Message]) throws -> [RoundReport] {
    let (server, connect) = try makeNetwork(wire, for: run.network)
    let threads = WorkerThreads()
    threads.start(transport: try connect("honest"), data: data, name: "honest", session: 1,
                  settings: .init(name: "honest", clientFirst: 0, clientCount: 5))
    let peer = HostilePeer(try connect("peer"))
    threads.start {
        peer.run(hello: Hello(session: 2, name: "peer", dataFingerprint: data.fingerprint, inputWidth: 784, classes: 10, clientFirst: 5, clientCount: 5),
                 heartbeats: true, noise: noise, seed: 5, answer: answer)
    }
    var reports: [RoundReport] = []
    _ = try run.run(over: server, cluster: CoordinatorSettings(expectedWorkers: 2, timing: ClusterTiming(heartbeat: .milliseconds(50)))) {
        reports.append($0.report)
    }
    peer.stop.set(true)
    #expect(threads.wait())
    return reports
}

/// Has a worker that offers `capabilities` say hello to a coordinator of `run`, and expects it refused with `reason`.
func expectRefused(by run: FederatedRun, data: Dataset, capabilities: Capabilities, reason: String,
                   sourceLocation: SourceLocation = #_sourceLocation) throws {
    let network = InProcessNetwork()
    let plain = network.connect()
    try plain.send(WireCodec.encode(.hello(Hello(session: 1, name: "plain", dataFingerprint: data.fingerprint, inputWidth: 784, classes: 10,
                                                  capabilities: capabilities))))
    let timing = ClusterTiming(heartbeat: .milliseconds(50), registration: .seconds(1))
    #expect(throws: ClusterError.self, sourceLocation: sourceLocation) {
        _ = try run.run(over: network.server(), cluster: CoordinatorSettings(expectedWorkers: 1, timing: timing))
    }
    let refusal = try #require(try plain.receive(timeout: .seconds(1)), sourceLocation: sourceLocation)
    #expect(try WireCodec.decode(refusal) == .refuse(Refuse(reason: reason)), sourceLocation: sourceLocation)
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
    private let silent = Locked(false)
    private let slowPolls: Duration

    init(_ inner: ClientTransport, slowPolls: Duration = .zero) { self.inner = inner; self.slowPolls = slowPolls }

    func silence() { silent.set(true) }

    var keys: CurveKeyPair? { inner.keys }

    func send(_ frames: [Frame]) throws {
        if !silent.get() { try inner.send(frames) }
    }

    func receive(timeout: Duration) throws -> [Frame]? {
        if silent.get() {
            Thread.sleep(forTimeInterval: timeout.seconds)
            return nil
        }
        let frames = try inner.receive(timeout: timeout)
        if frames == nil, slowPolls > .zero { Thread.sleep(forTimeInterval: slowPolls.seconds) }
        return frames
    }
}

/// A peer that registers like a worker and then misbehaves: each received message goes to `answer`, and
/// between messages it sends heartbeats (when `heartbeats`) and, from its first work on, `noise` frames, until stopped.
final class HostilePeer: @unchecked Sendable {
    let transport: ClientTransport
    let stop = Locked(false)
    let sent = Locked(0)

    init(_ transport: ClientTransport) { self.transport = transport }

    /// Random frames, half of them with a valid header start, as a fuzzing peer sends.
    static func noise(_ rng: inout SeededRandom) -> [Frame] {
        func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) } }
        var frames = (0..<(1 + rng.next(below: 3))).map { _ in Frame.bytes(bytes(rng.next(below: 64))) }
        if rng.next(below: 2) == 0 { frames[0] = .bytes([0x4E, 0x4E, WireCodec.version, UInt8(rng.next(below: 11))] + bytes(rng.next(below: 40))) }
        return frames
    }

    func run(hello: Hello, heartbeats: Bool, noise: Bool, seed: UInt64, answer: (Message, inout SeededRandom) -> [Message]) {
        var rng = SeededRandom(seed: seed)
        try? transport.send(WireCodec.encode(.hello(hello)))
        var lastBeat = ContinuousClock.now
        var working = false
        while !stop.get() {
            if heartbeats && ContinuousClock.now - lastBeat > .milliseconds(50) {
                try? transport.send(WireCodec.encode(.heartbeat(Heartbeat(session: hello.session))))
                lastBeat = .now
            }
            if let frames = try? transport.receive(timeout: .milliseconds(1)), let message = try? WireCodec.decode(frames) {
                switch message { case .task, .train: working = true; default: break }
                for reply in answer(message, &rng) { try? transport.send(WireCodec.encode(reply)) }
            }
            if noise && working {
                try? transport.send(HostilePeer.noise(&rng))
                sent.update { $0 += 1 }
            }
        }
    }
}

extension SyncRun {
    /// A run of three registered peers at this run's batch each: two honest workers, and one that answers every
    /// task with a gradient `damage` spoils (and floods random frames when `noise`). Returns the network, the
    /// outcome and how many noise messages the peer sent.
    func againstDamagingPeer(data: Dataset, wire: Wire, timing: ClusterTiming, noise: Bool,
                             damage: @escaping @Sendable (inout GradientResult, inout SeededRandom) -> Void) throws -> (Network, SyncTrainingRun.Outcome, Int) {
        let sync = SyncTrainingRun(settings: settings(batch: perWorkerBatch), cluster: CoordinatorSettings(expectedWorkers: 3, timing: timing),
                                   train: data, test: nil, logger: quiet)
        let (server, connect) = try makeNetwork(wire, for: sync.network)
        let threads = WorkerThreads()
        for i in 0..<2 { threads.start(transport: try connect("honest-\(i)"), data: data, name: "honest-\(i)", session: UInt64(i + 1)) }
        let peer = HostilePeer(try connect("damaging"))
        let fingerprint = data.fingerprint
        threads.start {
            peer.run(hello: Hello(session: 666, name: "damaging", dataFingerprint: fingerprint, inputWidth: 784, classes: 10),
                     heartbeats: true, noise: noise, seed: 99) { message, rng in
                guard case .task(let task) = message else { return [] }
                var g = GradientResult(step: task.step, start: task.start, count: UInt32(task.samples.count), correct: 0, lossSum: 1,
                                       computeNanoseconds: 0, gradient: Array(repeating: 0, count: task.parameters.count), state: [])
                damage(&g, &rng)
                return [.gradient(g)]
            }
        }
        let outcome = try sync.run(over: server)
        peer.stop.set(true)
        #expect(threads.wait())
        return (sync.network, outcome, peer.sent.get())
    }
}
