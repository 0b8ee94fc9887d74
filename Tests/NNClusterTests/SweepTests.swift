import Foundation
import NNCluster
import NNCore
import Testing

/// The sweep's grid: every combination, any key (nested ones too) validated as in a file, seeds put in.
@Suite struct SweepTests {
    @Test func gridIsTheProductOfItsAxes() throws {
        let base = try smallExperiment(StrategySpec(kind: .fedprox, mu: 0.1))
        let sweep = try Sweep(base: base, axes: [try .init(parsing: "learningRate=0.05,0.1"), try .init(parsing: "strategy.mu=0.01, 1"),
                                                 try .init(parsing: #"localBatch=10,"full""#)], seeds: [4, 5])
        #expect(sweep.cells.count == 8 && sweep.cells.first == ["0.05", "0.01", "10"] && sweep.cells.last == ["0.1", "1", #""full""#])
        let e = try sweep.experiment(["0.1", "1", #""full""#], seed: 5)
        #expect(e.learningRate == 0.1 && e.strategy.mu == 1 && e.localBatch == nil && e.seed == 5)
        #expect(e.clients == base.clients && e.partition == base.partition && e.rounds == base.rounds)
    }

    @Test func badAxesAreRefusedBeforeAnythingRuns() throws {
        let base = try smallExperiment()
        #expect(throws: ExperimentError.self) { try Sweep.Axis(parsing: "learningRate") }
        #expect(throws: ExperimentError.self) { try Sweep.Axis(parsing: "learningRate=0.1,,0.2") }
        #expect(throws: ExperimentError.self) { try Sweep(base: base, axes: [try .init(parsing: "learningRat=0.1")], seeds: [1]) }
        #expect(throws: ExperimentError.self) { try Sweep(base: base, axes: [try .init(parsing: "fraction=0,0.5")], seeds: [1]) }
        #expect(throws: ExperimentError.self) { try Sweep(base: base, axes: [], seeds: []) }
    }
}
