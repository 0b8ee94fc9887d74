import NNCluster
import NNCore
import Testing

@Suite(.serialized) struct SyncSGDTests {
    /// N workers at batch b give the parameters of one process at batch N·b over the same order.
    @Test(arguments: Wire.allCases, [1, 2, 4])
    func equalsSingleProcess(wire: Wire, workers: Int) throws {
        let data = try mnistSubset(1000)
        let run = SyncRun(spec: try ModelSpec(widths: [784, 32, 10], dropout: 0.1))
        let single = try run.singleProcess(workers: workers, data: data)
        let (distributed, outcome) = try run.distributed(workers: workers, data: data.train, wire: wire)
        let difference = relativeDifference(distributed, single)
        #expect(difference < 1e-5, "relative difference \(difference)")
        #expect(outcome.rejectedMessages == 0)
        // And training did move the parameters.
        #expect(relativeDifference(Network(spec: run.spec, seed: run.seed), single) > 1e-2)
    }

    /// One process whose batches are cut among T threads computes, bit for bit, what T workers do, batch norm and
    /// dropout included: the threads share one host's cores without a coordinator or a wire.
    @Test(arguments: [2, 3])
    func threadsEqualWorkers(threads: Int) throws {
        let data = try mnistSubset(1000)
        var run = SyncRun(spec: try ModelSpec(widths: [784, 32, 10], batchNorm: true, dropout: 0.1))
        let (distributed, _) = try run.distributed(workers: threads, data: data.train, wire: .inProcess)
        run.batchThreads = threads
        let single = try run.singleProcess(workers: threads, data: data)
        #expect(single.parameters.array == distributed.parameters.array)
        #expect(single.state.array == distributed.state.array)
        #expect(relativeDifference(Network(spec: run.spec, seed: run.seed), single) > 1e-2)
    }

    /// Workers that cut their share among threads still train one process's model, to rounding (weights such as
    /// 13/25 round, and 40 steps of Adam carry it: 1e-4 here, against 1e-5 for whole shares).
    @Test func workersWithBatchThreadsEqualSingleProcess() throws {
        let data = try mnistSubset(1000)
        var run = SyncRun(spec: try ModelSpec(widths: [784, 32, 10], dropout: 0.1))
        let single = try run.singleProcess(workers: 2, data: data)
        run.batchThreads = 2
        let (distributed, _) = try run.distributed(workers: 2, data: data.train, wire: .zeroMQ)
        #expect(relativeDifference(distributed, single) < 1e-4)
    }

    /// In a ring the workers sum their gradients among themselves and each steps a replica of the model; the
    /// coordinator's model, the replica reported after each round (of 5 steps here, the last of an epoch fewer),
    /// is still one process's model. Control goes over `wire`; the ring's own links are shared memory.
    @Test(arguments: Wire.allCases, [1, 2, 4])
    func ringEqualsSingleProcess(wire: Wire, workers: Int) throws {
        let data = try mnistSubset(1000)
        var run = SyncRun(spec: try ModelSpec(widths: [784, 32, 10], dropout: 0.1))
        run.topology = .ring
        run.ringSteps = 5
        let single = try run.singleProcess(workers: workers, data: data)
        let (distributed, outcome) = try run.distributed(workers: workers, data: data.train, wire: wire)
        let difference = relativeDifference(distributed, single)
        #expect(difference < 1e-5, "relative difference \(difference)")
        #expect(outcome.rejectedMessages == 0)
        // The coordinator sends each worker the starting replica once (model and Adam's two moments), and then
        // takes one replica a round, not a model's worth a step.
        let stepsPerEpoch = (1000 + workers * run.perWorkerBatch - 1) / (workers * run.perWorkerBatch)
        let rounds = run.epochs * ((stepsPerEpoch + run.ringSteps - 1) / run.ringSteps)
        let bytes = outcome.epochs.reduce(0) { $0 + $1.total.bytesSent + $1.total.bytesReceived }
        let model = 4 * single.parameterCount
        let bound = Double(model) * 3.1 * Double(rounds + workers)
        #expect(Double(bytes) < bound, "\(bytes) bytes in \(rounds) rounds, the model is \(model)")
        #expect(Double(bytes) > Double(model) * 3 * Double(rounds), "\(bytes) bytes in \(rounds) rounds, the model is \(model)")
        // Every member computes in every round: the summed compute time exceeds the slowest member's (with more
        // than one), and is at most as many times it as there are members.
        for epoch in outcome.epochs {
            let slowest = epoch.total.result.computeSeconds, summed = epoch.total.result.computeSecondsSummed
            #expect(slowest > 0 && (workers == 1 ? summed == slowest : summed > slowest) && summed <= Double(workers) * slowest * (1 + 1e-9),
                    "\(summed) s summed, \(slowest) s slowest")
        }
    }

    /// Halving-doubling among 4 members over CURVE (each member admitting two partners' keys) and 8 in process, and
    /// among 3, where the ring's algorithm sums: one process's model each time. With plain SGD to within 10⁻⁶;
    /// Adam magnifies the last bits that the order of a sum leaves different (up to 7 × 10⁻⁵ here, among 3 by the
    /// ring's algorithm too), so with it to within 10⁻⁴.
    @Test(arguments: [(Wire.curve, 4), (.inProcess, 8), (.zeroMQ, 3)])
    func halvingDoublingEqualsSingleProcess(wire: Wire, workers: Int) throws {
        let data = try mnistSubset(1000)
        var run = try SyncRun.ring(steps: 5)
        run.topology = .halvingDoubling
        for (optimizer, bound) in [(OptimizerSettings.Kind.sgd, 1e-6), (.adam, 1e-4)] {
            run.optimizer = OptimizerSettings(kind: optimizer)
            let single = try run.singleProcess(workers: workers, data: data)
            let (distributed, outcome) = try run.distributed(workers: workers, data: data.train, wire: wire)
            let difference = relativeDifference(distributed, single)
            #expect(difference < bound, "\(optimizer): relative difference \(difference)")
            #expect(outcome.rejectedMessages == 0)
        }
    }

    /// With batch norm the running statistics are summed with the gradients: the ring gives the parameter
    /// server's model (each worker normalises with its own part's statistics in both).
    @Test func ringWithBatchNormEqualsParameterServer() throws {
        let data = try mnistSubset(1000)
        var run = SyncRun(spec: try ModelSpec(widths: [784, 32, 10], batchNorm: true))
        let (server, _) = try run.distributed(workers: 2, data: data.train, wire: .inProcess)
        run.topology = .ring
        let (ring, _) = try run.distributed(workers: 2, data: data.train, wire: .inProcess)
        #expect(relativeDifference(ring, server) < 1e-5)
        #expect(ring.state.array != Network(spec: run.spec, seed: run.seed).state.array)
    }

    /// With bfloat16 vectors the run is no longer one process's, but it learns as well: half the bytes on the wire,
    /// and test accuracy within 2 points of the float32 run's (on 500 test images, after 2 epochs of 1,000 samples).
    @Test func bfloat16VectorsHalveTheBytes() throws {
        let data = try mnistSubset(1000)
        var run = SyncRun(spec: try ModelSpec(widths: [784, 32, 10]))
        let (exact, exactOutcome) = try run.distributed(workers: 2, data: data.train, wire: .zeroMQ)
        run.compactVectors = true
        let (compact, compactOutcome) = try run.distributed(workers: 2, data: data.train, wire: .zeroMQ)
        #expect(compact.parameters.array != exact.parameters.array)
        let bytes = { (o: SyncTrainingRun.Outcome) in Double(o.epochs.reduce(0) { $0 + $1.total.bytesSent + $1.total.bytesReceived }) }
        let ratio = bytes(compactOutcome) / bytes(exactOutcome)
        #expect(ratio > 0.5 && ratio < 0.52, "bytes ratio \(ratio)")
        let exactAccuracy = exact.evaluate(data.test).accuracy, compactAccuracy = compact.evaluate(data.test).accuracy
        #expect(exactAccuracy > 0.8 && abs(compactAccuracy - exactAccuracy) <= 0.02, "accuracy \(compactAccuracy) against \(exactAccuracy)")
        #expect(compactOutcome.rejectedMessages == 0)
    }
}
