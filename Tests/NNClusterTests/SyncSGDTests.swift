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
}
