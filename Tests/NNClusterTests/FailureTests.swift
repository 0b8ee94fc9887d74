import Foundation
import NNCluster
import NNCore
import NNData
import NNProtocol
import TestSupport
import Testing

@Suite(.serialized) struct FailureTests {
    /// A worker that goes silent mid-run (as a hung or cut-off process) is found by the heartbeat timeout; its
    /// slice goes to the others and the model is still the single-process one. Splitting the lost slice differently
    /// changes the order of float sums, hence a looser bound than the 1e-5 of an undisturbed run.
    @Test(arguments: Wire.allCases)
    func silentWorkerIsReplaced(wire: Wire) throws {
        let data = try mnistSubset(1000)
        let run = SyncRun(spec: try ModelSpec(widths: [784, 32, 10]))
        let single = try run.singleProcess(workers: 3, data: data)
        let started = ContinuousClock.now
        let (distributed, _) = try run.distributed(workers: 3, data: data.train, wire: wire,
            timing: ClusterTiming(heartbeat: .milliseconds(20), timeout: .milliseconds(300), registration: .seconds(20)),
            onRound: { round, clients in
                if round == 5 { clients[1].silence() }
            })
        #expect(relativeDifference(distributed, single) < 1e-4)
        #expect(started.duration(to: .now) < .seconds(20))
    }

    /// In a ring, a worker gone silent mid-round leaves its peers waiting for its chunks: once the heartbeat
    /// timeout finds it, the round starts again in a ring of the others, from the replica of the round before,
    /// and the model is still the single-process one. In halving-doubling among four, the three left sum by the
    /// ring's algorithm.
    @Test(arguments: [(Topology.ring, 3), (.halvingDoubling, 4)])
    func silentRingMemberRestartsTheRound(_ topology: Topology, workers: Int) throws {
        let data = try mnistSubset(1000)
        var run = try SyncRun.ring(steps: 4)
        run.topology = topology
        let single = try run.singleProcess(workers: workers, data: data)
        let (distributed, outcome) = try run.distributed(workers: workers, data: data.train, wire: .zeroMQ,
            timing: ClusterTiming(heartbeat: .milliseconds(20), timeout: .milliseconds(300), registration: .seconds(20)),
            onRound: { steps, clients in
                if steps == 8 { clients[1].silence() }
            })
        #expect(relativeDifference(distributed, single) < 1e-4)
        #expect(outcome.epochs.last?.total.workers == workers - 1)
    }

    /// A ring's first round, not yet timed, may take the timeout for each of its steps: members whose steps are
    /// slow (50 ms each), but who are heard from, are not dropped when it outlasts twice the timeout.
    @Test func slowFirstRingRoundIsWaitedFor() throws {
        let data = try mnistSubset(1000)
        var run = try SyncRun.ring(steps: 20)
        run.optimizer = OptimizerSettings(kind: .sgd)
        let single = try run.singleProcess(workers: 2, data: data)
        let started = ContinuousClock.now
        let (distributed, outcome) = try run.distributed(workers: 2, data: data.train, wire: .inProcess,
            timing: ClusterTiming(heartbeat: .milliseconds(20), timeout: .milliseconds(300), registration: .seconds(20)), slowPolls: .milliseconds(50))
        #expect(started.duration(to: .now) > .milliseconds(750 * run.epochs), "the rounds were not slow: \(started.duration(to: .now))")
        #expect(relativeDifference(distributed, single) < 1e-6)
        #expect(outcome.epochs.allSatisfy { $0.total.workers == 2 }, "a member was dropped")
    }

    /// A ring member asked to stop (SIGTERM) during a round leaves after the step it is in, not after the round's
    /// last: it sends no tally for the round, says it leaves, and the others take the round again without it.
    @Test func stoppedRingMemberLeavesMidRound() throws {
        let data = try mnistSubset(1000), run = try SyncRun.ring(steps: 6)
        let single = try run.singleProcess(workers: 3, data: data)
        let sync = SyncTrainingRun(settings: run.settings(batch: run.perWorkerBatch),
                                   cluster: CoordinatorSettings(expectedWorkers: 3, timing: quickTiming, topology: .ring, ringSteps: run.ringSteps),
                                   train: data.train, test: nil, logger: quiet)
        let (server, connect) = try makeNetwork(.zeroMQ, for: sync.network)
        let threads = WorkerThreads()
        let stop = StopRequest(), leaving = StoppedOnRingTask(try connect("w1"), stop: stop)
        let ended = Locked("")
        for i in 0..<3 {
            let name = "worker-\(i)"
            let transport: ClientTransport = i == 1 ? leaving : try connect(name)
            let settings = Worker.Settings(name: name, registrationTimeout: .seconds(20), reconnectTimeout: .seconds(1), stop: i == 1 ? stop : nil)
            threads.start(transport: transport, data: data.train, name: name, session: UInt64(i + 1), settings: settings) { outcome in
                if i == 1 { ended.set(outcome) }
            }
        }
        let outcome = try sync.run(over: server)
        #expect(threads.wait(), "workers did not stop after shutdown")
        #expect(ended.get() == "finished: left: stopped in a ring round")
        #expect(leaving.talliesAfterStop.get() == 0)
        #expect(outcome.epochs.last?.total.workers == 2)
        #expect(relativeDifference(sync.network, single) < 1e-4)
    }

    /// A worker that joins after training started gets work from the next step on; the global batch, and so
    /// the model, stays the one of the run it joined. Three slices instead of two change the order of float sums
    /// in every later step, which Adam amplifies in near-zero gradient entries: hence 1e-3 here.
    @Test func lateWorkerJoins() throws {
        let data = try mnistSubset(1000)
        let run = SyncRun(spec: try ModelSpec(widths: [784, 32, 10]))
        let single = try run.singleProcess(workers: 2, data: data)
        let (distributed, outcome) = try run.distributed(workers: 2, data: data.train, wire: .inProcess, lateWorkers: 1, joinAt: 3)
        #expect(outcome.epochs.map(\.total.workers) == [3, 3])
        #expect(relativeDifference(distributed, single) < 1e-3)
    }

    /// Below --min-workers the run stops with an error instead of going on.
    @Test func belowMinimumWorkersStops() throws {
        let data = try mnistSubset(1000).train
        let run = SyncRun(spec: try ModelSpec(widths: [784, 32, 10]))
        #expect(throws: ClusterError.self) {
            _ = try run.distributed(workers: 2, data: data, wire: .inProcess,
                timing: ClusterTiming(heartbeat: .milliseconds(20), timeout: .milliseconds(300), registration: .seconds(20)), minimumWorkers: 2,
                onRound: { round, clients in if round == 2 { clients[0].silence() } })
        }
    }

    /// A peer that registers like a worker, then answers every task with damaged or random frames, and floods
    /// random frames besides: every one is rejected until the peer is ignored and dropped, the run completes,
    /// and the model is the single-process one (to 1e-4: the rejected slices are recomputed by the others, split
    /// differently).
    @Test func garbageFromARegisteredPeer() throws {
        let data = try mnistSubset(600)
        let run = SyncRun(spec: try ModelSpec(widths: [784, 16, 10]), perWorkerBatch: 25, epochs: 3)
        let (network, outcome, sent) = try run.againstDamagingPeer(data: data.train, wire: .zeroMQ,
                                                                   timing: ClusterTiming(heartbeat: .milliseconds(50), timeout: .seconds(3)),
                                                                   noise: true) { g, rng in
            // Wrong in one of four ways: NaN, a wrong shape, a wrong count, or a step that is not this one.
            switch rng.next(below: 4) {
            case 0: g.gradient[0] = .nan
            case 1: g.gradient.removeLast()
            case 2: g.count += 1
            default: g.step += 1
            }
        }
        // The flood gets the peer ignored (and dropped) after `AdmissionLimits.badMessages` rejections.
        #expect(sent > 30, "only \(sent) hostile messages")
        #expect(outcome.rejectedMessages > 30)
        #expect(relativeDifference(network, try run.singleProcess(workers: 3, data: data)) < 1e-4)
    }
}

@Suite struct AdmissionTests {
    /// A worker that does not offer a feature the model needs is refused with the reason, and a hello of another
    /// protocol version gets a refuse stamped with that version, which the old peer can read.
    @Test func refusesMissingCapabilitiesAndOtherVersions() throws {
        let data = try mnistSubset(200).train
        let run = SyncTrainingRun(settings: SyncRun(spec: try ModelSpec(widths: [784, 16, 10], dropout: 0.2)).settings(batch: 10),
                                  cluster: CoordinatorSettings(expectedWorkers: 1, timing: ClusterTiming(heartbeat: .milliseconds(50), registration: .seconds(2))),
                                  train: data, test: nil, logger: quiet)
        let network = InProcessNetwork()
        let plain = network.connect(), old = network.connect()
        let hello = Hello(session: 1, name: "plain", dataFingerprint: data.fingerprint, inputWidth: 784, classes: 10, capabilities: [.batchNorm])
        try plain.send(WireCodec.encode(.hello(hello)))
        var oldHello = WireCodec.encode(.hello(hello))
        if case .bytes(var header) = oldHello[0] { header[2] = 2; oldHello[0] = .bytes(header) }
        try old.send(oldHello)
        #expect(throws: ClusterError.self) { _ = try run.run(over: network.server()) }
        let refusal = try #require(try plain.receive(timeout: .seconds(1)))
        #expect(try WireCodec.decode(refusal) == .refuse(Refuse(reason: "the run needs dropout, which this worker does not offer")))
        let oldRefusal = try #require(try old.receive(timeout: .seconds(1)))
        #expect(oldRefusal[0].wireBytes[2] == 2)
        guard case .refuse(let r) = try WireCodec.decode(oldRefusal) else { Issue.record("not a refuse"); return }
        #expect(r.reason.contains("protocol version 2 is not supported"))
    }
}

/// A worker's transport that asks the worker to stop once its first ring task comes, and counts the ring tallies
/// (gradient results) it sends after that.
private final class StoppedOnRingTask: ClientTransport, @unchecked Sendable {
    private let inner: ClientTransport
    private let stop: StopRequest
    let talliesAfterStop = Locked(0)

    init(_ inner: ClientTransport, stop: StopRequest) { self.inner = inner; self.stop = stop }

    var keys: CurveKeyPair? { inner.keys }

    func send(_ frames: [Frame]) throws {
        if stop.reason != nil, case .gradient? = try? WireCodec.decode(frames) { talliesAfterStop.set(talliesAfterStop.get() + 1) }
        try inner.send(frames)
    }

    func receive(timeout: Duration) throws -> [Frame]? {
        let frames = try inner.receive(timeout: timeout)
        if let frames, case .task(let task)? = try? WireCodec.decode(frames), task.ring != nil { stop.request("stopped in a ring round") }
        return frames
    }
}
