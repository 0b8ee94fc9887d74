import Dispatch

/// The gradient of one batch on several threads. The batch is cut as synchronous SGD cuts a step among
/// workers (`BatchSlices`); each slice runs on a replica that reads the network's parameters in place, and the
/// slices' gradients and batch-norm state are combined weighed by their rows, in order, as the coordinator
/// combines workers' results. So T threads compute bit for bit what T workers of one batch each would. A
/// batch of one slice runs on the network itself, as `Backpropagation` alone.
public final class ParallelBackpropagation {
    public let network: Network
    public let threads: Int
    private let whole: Backpropagation
    private let parts: [Backpropagation]

    public init(network: Network, threads: Int, seed: UInt64) {
        precondition(threads >= 1)
        self.network = network
        self.threads = threads
        whole = Backpropagation(network: network, seed: seed)
        parts = threads == 1 ? [] : (0..<threads).map { _ in Backpropagation(network: Network(sharingParametersOf: network), seed: seed) }
    }

    /// Forward and backward on `batch` rows; leaves the gradient of the batch's mean loss in `network.gradients`
    /// and the slices' combined state in `network.state`. The result's loss is the batch's mean. `firstRow`
    /// places the batch within a larger global batch, as for `Backpropagation`.
    public func run(x: UnsafePointer<Float>, labels: UnsafePointer<Int32>, batch: Int, step: UInt64, firstRow: Int = 0) -> Backpropagation.Result {
        let slices = BatchSlices.ranges(count: batch, parts: threads)
        guard slices.count > 1 else { return whole.run(x: x, labels: labels, batch: batch, step: step, firstRow: firstRow) }
        let width = network.spec.inputWidth, stateCount = network.state.count
        let results = UnsafeMutableBufferPointer<Backpropagation.Result>.allocate(capacity: slices.count)
        defer { results.deallocate() }
        // Each slice touches its own replica and result only; the parameters and the batch are read alone.
        nonisolated(unsafe) let shared = (x: x, labels: labels, results: results, parts: parts, state: UnsafePointer(network.state.base))
        DispatchQueue.concurrentPerform(iterations: slices.count) { i in
            let part = shared.parts[i], rows = slices[i]
            if stateCount > 0 { part.network.state.base.update(from: shared.state, count: stateCount) }
            shared.results[i] = part.run(x: shared.x + rows.lowerBound * width, labels: shared.labels + rows.lowerBound, batch: rows.count,
                                         step: step, firstRow: firstRow + rows.lowerBound)
        }
        let weights = slices.map { Float($0.count) / Float(batch) }
        let used = parts.prefix(slices.count)
        BLAS.weightedSum(used.map { UnsafePointer($0.network.gradients.base) }, weights: weights, into: network.gradients.base,
                         count: network.parameterCount)
        if stateCount > 0 {
            BLAS.weightedSum(used.map { UnsafePointer($0.network.state.base) }, weights: weights, into: network.state.base, count: stateCount)
        }
        var loss = 0.0, correct = 0
        for (i, rows) in slices.enumerated() {
            loss += results[i].loss * Double(rows.count)
            correct += results[i].correct
        }
        return Backpropagation.Result(loss: loss / Double(batch), correct: correct)
    }
}
