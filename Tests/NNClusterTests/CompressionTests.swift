import Foundation
@testable import NNCluster
import NNCore
import NNProtocol
import Testing

/// Compressed updates: what int8 and top-k send, error feedback, the equivalence of simulation and workers, and
/// the bytes that count.
@Suite(.serialized) struct CompressionTests {
    let layout = Network(spec: try! ModelSpec(widths: [6, 5, 3])).parameterLayout

    func delta(_ seed: UInt64, count: Int) -> [Float] {
        var rng = SeededRandom(seed: seed, stream: 3)
        return (0..<count).map { _ in rng.nextGaussian() * 0.1 }
    }

    /// int8 with stochastic rounding is unbiased and never off by more than one step of its tensor's scale.
    @Test func int8IsUnbiasedWithinOneStep() throws {
        let count = layout.last!.offset + layout.last!.tensor.count
        let global = [Float](repeating: 0.5, count: count), change = delta(1, count: count)
        let trained = zip(global, change).map(+)
        let compressor = UpdateCompressor(spec: CompressionSpec(kind: .int8), seed: 1, layout: layout, clients: 1)
        var mean = [Double](repeating: 0, count: count)
        let rounds = 2000
        for round in 0..<rounds {
            let encoding = compressor.encode(trained: trained, global: global, client: 0, slot: 0, round: UInt64(round))
            guard case let .int8(scales, lengths, _) = encoding else { Issue.record("not int8"); return }
            #expect(lengths.map(Int.init) == layout.map(\.tensor.count) && scales.count == layout.count)
            let decoded = encoding.decoded
            for (slot, scale) in zip(layout, scales) {
                for i in slot.offset..<(slot.offset + slot.tensor.count) { #expect(abs(decoded[i] - change[i]) <= scale * 1.0001) }
            }
            for i in 0..<count { mean[i] += Double(decoded[i]) / Double(rounds) }
        }
        let bias = zip(mean, change).map { abs($0 - Double($1)) }.max()!
        #expect(bias < 2e-3, "largest bias \(bias)")
    }

    /// top-k sends the k largest magnitudes, and error feedback loses nothing: what was sent over the rounds, plus
    /// what comes out when the client then sends zero changes until nothing is held back, equals the sum of the changes.
    @Test func topKWithErrorFeedbackConservesTheSum() throws {
        #expect(UpdateCompressor.largest(3, of: [0.1, -5, 2, 2, 0, -2, 7]) == [1, 2, 6])
        let layout = Network(spec: try ModelSpec(widths: [14, 20])).parameterLayout  // 300 parameters
        let count = 300, k = 15
        let compressor = UpdateCompressor(spec: CompressionSpec(kind: .topk, fraction: Double(k) / Double(count)), seed: 1, layout: layout, clients: 2)
        let global = [Float](repeating: 0, count: count), zero = [Float](repeating: 0, count: count)
        var sent = [Double](repeating: 0, count: count), total = [Double](repeating: 0, count: count)
        for round in 0..<60 {
            let change = round < 20 ? delta(UInt64(round + 10), count: count) : zero
            for i in 0..<count { total[i] += Double(change[i]) }
            let encoding = compressor.encode(trained: change, global: global, client: 1, slot: 1, round: UInt64(round))
            guard case let .sparse(n, indices, values) = encoding else { Issue.record("not sparse"); return }
            #expect(n == UInt32(count) && indices.count == k)
            // What the client had to send: every change so far less what it sent. The k entries sent are those
            // of largest magnitude, with their values.
            let owed = (0..<count).map { total[$0] - sent[$0] }
            let chosen = Set(indices.map(Int.init))
            let smallestSent = chosen.map { abs(owed[$0]) }.min()!
            let largestHeld = (0..<count).filter { !chosen.contains($0) }.map { abs(owed[$0]) }.max()!
            #expect(smallestSent >= largestHeld - 1e-6, "round \(round): sent \(smallestSent), held back \(largestHeld)")
            #expect(zip(indices, values).allSatisfy { abs(Double($1) - owed[Int($0)]) < 1e-5 })
            for (i, v) in zip(indices, values) { sent[Int(i)] += Double(v) }
        }
        let gap = (0..<count).map { abs(sent[$0] - total[$0]) }.max()!
        #expect(gap < 1e-4, "largest gap \(gap)")
    }

    /// With compression the simulation and a coordinator with two workers still give the same model, bit for bit,
    /// over ZeroMQ; uploads are smaller by the encoding, and the coordinator receives what the simulation counts.
    @Test(arguments: [CompressionSpec(kind: .int8), CompressionSpec(kind: .topk, fraction: 0.1)])
    func simulationEqualsWorkersWithCompression(_ compression: CompressionSpec) throws {
        let data = try mnistSubset(3000).train
        var experiment = try smallExperiment()
        experiment.compression = compression
        try experiment.validate()
        let (simulated, simulatedReports) = try simulate(experiment, data: data)
        let (distributed, reports) = try federated(experiment, data: data, workers: 2, wire: .zeroMQ)
        #expect(simulated.parameters.array == distributed.parameters.array)
        #expect(reports.last?.rejectedSoFar == 0)
        let plain = try simulate(try smallExperiment(), data: data).1
        let ratio = Double(plain.map(\.bytesReceived).reduce(0, +)) / Double(simulatedReports.map(\.bytesReceived).reduce(0, +))
        #expect(ratio > (compression.kind == .int8 ? 3.5 : 4.5), "uploads only \(ratio)× smaller")
        let measured = Double(reports.map(\.bytesReceived).reduce(0, +)) / Double(simulatedReports.map(\.bytesReceived).reduce(0, +))
        #expect(measured > 0.95 && measured < 1.3, "the coordinator received \(measured)× what the simulation counts")
    }

    @Test func compressionKeysAreChecked() throws {
        var experiment = try smallExperiment()
        experiment.compression = CompressionSpec(kind: .topk)
        #expect(throws: ExperimentError.self) { try experiment.validate() }
        experiment.compression = CompressionSpec(kind: .int8, fraction: 0.5)
        #expect(throws: ExperimentError.self) { try experiment.validate() }
        experiment.compression = CompressionSpec(kind: .topk, fraction: 1.5)
        #expect(throws: ExperimentError.self) { try experiment.validate() }
    }
}
