import Foundation
import NNCluster
import NNCore
import NNData
import NNProtocol
import Testing

@Suite(.serialized) struct FailureTests {
    /// A worker that goes silent mid-run (as a hung or cut-off process) is found by the heartbeat timeout; its
    /// slice goes to the others and the model is still the single-process one. Splitting the lost slice differently
    /// changes the order of float sums, hence a looser bound than the 1e-5 of an undisturbed run.
    @Test(arguments: Wire.allCases)
    func silentWorkerIsReplaced(wire: Wire) throws {
        let data = try mnistSubset(1000).train
        let run = SyncRun(spec: try ModelSpec(widths: [784, 32, 10]))
        let single = try run.singleProcess(workers: 3, data: data)
        let started = ContinuousClock.now
        let (distributed, _, _) = try run.distributed(workers: 3, data: data, wire: wire,
            settings: .init(expectedWorkers: 3, registrationTimeout: .seconds(20), heartbeatInterval: .milliseconds(20), workerTimeout: .milliseconds(300)),
            onRound: { round, clients in
                if round == 5 { clients[1].silence() }
            })
        #expect(relativeDifference(distributed, single) < 1e-4)
        #expect(started.duration(to: .now) < .seconds(20))
    }

    /// A worker that joins after training started gets work from the next step on; the global batch, and so
    /// the model, stays the one of the run it joined. Three slices instead of two change the order of float sums
    /// in every later step, which Adam amplifies in near-zero gradient entries: hence 1e-3 here.
    @Test func lateWorkerJoins() throws {
        let data = try mnistSubset(1000).train
        let run = SyncRun(spec: try ModelSpec(widths: [784, 32, 10]))
        let single = try run.singleProcess(workers: 2, data: data)
        let (distributed, _, reports) = try run.distributed(workers: 2, data: data, wire: .inProcess, lateWorkers: 1, joinAt: 3)
        #expect(reports.map(\.workers) == [3, 3])
        #expect(relativeDifference(distributed, single) < 1e-3)
    }

    /// Below --min-workers the run stops with an error instead of going on.
    @Test func belowMinimumWorkersStops() throws {
        let data = try mnistSubset(1000).train
        let run = SyncRun(spec: try ModelSpec(widths: [784, 32, 10]))
        #expect(throws: ClusterError.self) {
            _ = try run.distributed(workers: 2, data: data, wire: .inProcess,
                settings: .init(expectedWorkers: 2, minimumWorkers: 2, registrationTimeout: .seconds(20), heartbeatInterval: .milliseconds(20),
                                workerTimeout: .milliseconds(300)),
                onRound: { round, clients in if round == 2 { clients[0].silence() } })
        }
    }

    /// A peer that registers like a worker, then answers every task with damaged or random frames, and sends
    /// thousands of random frames besides: every one is rejected, the run completes, and the model is the
    /// single-process one (to 1e-4: the rejected slices are recomputed by the others, split differently).
    @Test func garbageFromARegisteredPeer() throws {
        let data = try mnistSubset(600).train
        let run = SyncRun(spec: try ModelSpec(widths: [784, 16, 10]), perWorkerBatch: 25, epochs: 3)
        let single = try run.singleProcess(workers: 2, data: data)
        let trainer = run.trainer()
        let settings = ZmqSettings(maximumMessageBytes: 1 << 22)
        let server = try ZmqServer(bind: "tcp://127.0.0.1:*", settings: settings)
        let fingerprint = data.fingerprint
        // Global batch 50, as for two workers, but three peers: two honest, one hostile.
        let coordinator = Coordinator(
            transport: server,
            strategy: SynchronousSGD(trainer: trainer, trainingSamples: data.sampleCount, globalBatch: 50, epochs: 3),
            configuration: RunConfiguration(mode: "sync", model: run.spec, seed: run.seed, globalBatch: 50, heartbeatSeconds: 0.05, timeoutSeconds: 3),
            data: .init(fingerprint: fingerprint, inputWidth: 784, classes: 10),
            settings: .init(expectedWorkers: 3, registrationTimeout: .seconds(20), heartbeatInterval: .milliseconds(50), workerTimeout: .seconds(3)),
            logger: quiet)
        let group = DispatchGroup()
        for i in 0..<2 {
            let worker = Worker(transport: try ZmqClient(connect: server.endpoint, identity: Array("honest-\(i)".utf8), settings: settings),
                                data: data, fingerprint: fingerprint, session: UInt64(i + 1), settings: .init(name: "honest-\(i)"), logger: quiet)
            nonisolated(unsafe) let w = worker
            group.enter()
            DispatchQueue.global().async { _ = try? w.run(); group.leave() }
        }
        let hostile = try ZmqClient(connect: server.endpoint, identity: Array("hostile".utf8), settings: settings)
        let stop = Locked(false), sent = Locked(0)
        nonisolated(unsafe) let h = hostile
        group.enter()
        DispatchQueue.global().async {
            var rng = SeededRandom(seed: 99)
            func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) } }
            try? h.send(WireCodec.encode(.hello(Hello(session: 666, name: "hostile", dataFingerprint: fingerprint, inputWidth: 784, classes: 10))))
            while !stop.get() {
                if let frames = try? h.receive(timeout: .milliseconds(1)), case .task(let task)? = try? WireCodec.decode(frames) {
                    // Answer the task, wrongly: NaN, a wrong shape, a wrong count, or a step that is not this one.
                    var g = GradientResult(step: task.step, start: task.start, count: task.count, correct: 0, lossSum: 1,
                                           computeNanoseconds: 0, gradient: Array(repeating: 0, count: task.parameters.count), state: [])
                    switch rng.next(below: 4) {
                    case 0: g.gradient[0] = .nan
                    case 1: g.gradient.removeLast()
                    case 2: g.count += 1
                    default: g.step += 1
                    }
                    try? h.send(WireCodec.encode(.gradient(g)))
                }
                var frames = (0..<(1 + rng.next(below: 3))).map { _ in Frame.bytes(bytes(rng.next(below: 64))) }
                if rng.next(below: 2) == 0 { frames[0] = .bytes([0x4E, 0x4E, WireCodec.version, UInt8(rng.next(below: 11))] + bytes(rng.next(below: 40))) }
                try? h.send(frames)
                sent.set(sent.get() + 1)
            }
            group.leave()
        }
        try coordinator.run { _ in true }
        stop.set(true)
        #expect(group.wait(timeout: .now() + 20) == .success)
        hostile.close()
        server.close()
        #expect(sent.get() > 1000, "only \(sent.get()) hostile messages")
        #expect(coordinator.rejected > 100)
        #expect(relativeDifference(trainer.network, single) < 1e-4)
    }
}

final class Locked<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T
    init(_ value: T) { self.value = value }
    func set(_ v: T) { lock.lock(); value = v; lock.unlock() }
    func get() -> T { lock.lock(); defer { lock.unlock() }; return value }
}
