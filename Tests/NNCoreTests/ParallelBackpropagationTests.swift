import NNCore
import Testing

@Suite struct ParallelBackpropagationTests {
    @Test func slicesAreContiguousAndNearEqual() {
        #expect(BatchSlices.ranges(count: 10, parts: 3) == [0..<4, 4..<7, 7..<10])
        #expect(BatchSlices.ranges(count: 8, parts: 2) == [0..<4, 4..<8])
        #expect(BatchSlices.ranges(count: 2, parts: 5) == [0..<1, 1..<2])
        #expect(BatchSlices.ranges(count: 7, parts: 1) == [0..<7])
    }

    /// A random batch of `rows` for `spec`.
    private func batch(_ spec: ModelSpec, rows: Int, seed: UInt64) -> (x: [Float], labels: [Int32]) {
        var rng = SeededRandom(seed: seed)
        let x = (0..<(rows * spec.inputWidth)).map { _ in rng.nextUnitFloat() }
        let labels = (0..<rows).map { _ in Int32(rng.next(below: spec.classes)) }
        return (x, labels)
    }

    /// T threads leave, bit for bit, the weighted sum of each slice's gradient and batch-norm state computed
    /// alone from the same parameters and state (what the coordinator makes of T workers' results), with
    /// dropout masks placed by row. The state starts away from its initial values, so that a replica that did not
    /// take it from the network would be seen.
    @Test(arguments: [2, 3, 4])
    func threadsGiveTheWorkersSum(threads: Int) throws {
        let spec = try ModelSpec(widths: [12, 8, 8, 5], batchNorm: true, dropout: 0.2)
        let rows = 11, step: UInt64 = 3, firstRow = 5
        let (x, labels) = batch(spec, rows: rows, seed: 9)
        let network = Network(spec: spec, seed: 4)
        for i in 0..<network.state.count { network.state.base[i] = Float(i % 7) * 0.1 + 0.5 }
        let start = (network.parameters.array, network.state.array)
        let parallel = ParallelBackpropagation(network: network, threads: threads, seed: 11)
        let result = x.withUnsafeBufferPointer { x in
            labels.withUnsafeBufferPointer { parallel.run(x: x.baseAddress!, labels: $0.baseAddress!, batch: rows, step: step, firstRow: firstRow) }
        }
        var gradients: [[Float]] = [], states: [[Float]] = [], weights: [Float] = [], loss = 0.0, correct = 0
        for slice in BatchSlices.ranges(count: rows, parts: threads) {
            let alone = Network(spec: spec)
            alone.load(parameters: start.0, state: start.1)
            let r = Array(x[(slice.lowerBound * spec.inputWidth)..<(slice.upperBound * spec.inputWidth)]).withUnsafeBufferPointer { x in
                Array(labels[slice]).withUnsafeBufferPointer {
                    Backpropagation(network: alone, seed: 11).run(x: x.baseAddress!, labels: $0.baseAddress!, batch: slice.count, step: step,
                                                                  firstRow: firstRow + slice.lowerBound)
                }
            }
            gradients.append(alone.gradients.array); states.append(alone.state.array)
            weights.append(Float(slice.count) / Float(rows))
            loss += r.loss * Double(slice.count); correct += r.correct
        }
        let expected = FloatBuffer(count: network.parameterCount), expectedState = FloatBuffer(count: network.state.count)
        BLAS.weightedSum(gradients, weights: weights, into: expected.base, count: network.parameterCount)
        BLAS.weightedSum(states, weights: weights, into: expectedState.base, count: network.state.count)
        #expect(network.gradients.array == expected.array)
        #expect(network.state.array == expectedState.array)
        #expect(network.state.array != start.1)
        #expect(network.parameters.array == start.0)
        #expect(result.loss == loss / Double(rows) && result.correct == correct)
    }

    /// Without batch norm the slices' weighted sum is the whole batch's gradient, up to rounding; and a batch of
    /// one slice is computed on the network itself, as by `Backpropagation`.
    @Test func threadsGiveTheBatchGradient() throws {
        let spec = try ModelSpec(widths: [12, 16, 5])
        let rows = 9
        let (x, labels) = batch(spec, rows: rows, seed: 2)
        func gradient(threads: Int, rows: Int) -> [Float] {
            let network = Network(spec: spec, seed: 4)
            _ = x.withUnsafeBufferPointer { x in
                labels.withUnsafeBufferPointer {
                    ParallelBackpropagation(network: network, threads: threads, seed: 1).run(x: x.baseAddress!, labels: $0.baseAddress!, batch: rows, step: 0)
                }
            }
            return network.gradients.array
        }
        let whole = gradient(threads: 1, rows: rows), split = gradient(threads: 2, rows: rows)
        let scale = whole.map(abs).max()!
        #expect(scale > 0)
        #expect(zip(whole, split).map { abs($0 - $1) }.max()! < 1e-6 * scale)
        #expect(gradient(threads: 4, rows: 1) == gradient(threads: 1, rows: 1))
    }
}
