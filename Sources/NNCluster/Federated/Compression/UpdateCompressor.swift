import NNCore
import NNProtocol

/// A hosted client's side of compressed updates: encodes the change of its model, and for top-k keeps what it did
/// not send (error feedback) to add to its next change.
final class UpdateCompressor: @unchecked Sendable {
    let spec: CompressionSpec
    let seed: UInt64
    /// The parameter tensors' (offset, count): int8 takes a scale per tensor.
    let segments: [(offset: Int, count: Int)]
    /// Per hosted client (by index from the first), what top-k left out so far. Each client's box is touched by the
    /// one thread training it.
    private let residuals: [Residual]

    final class Residual { var values: [Float] = [] }

    init(spec: CompressionSpec, seed: UInt64, layout: [Network.Slot], clients: Int) {
        self.spec = spec
        self.seed = seed
        segments = layout.map { ($0.offset, $0.tensor.count) }
        residuals = spec.kind == .topk ? (0..<clients).map { _ in Residual() } : []
    }

    /// `trained` − `global` as the spec says; `slot` is the client's index among the hosted ones.
    func encode(trained: UnsafePointer<Float>, global: [Float], client: Int, slot: Int, round: UInt64) -> DeltaEncoding {
        let count = global.count
        var delta = [Float](repeating: 0, count: count)
        for i in 0..<count { delta[i] = trained[i] - global[i] }
        switch spec.kind {
        case .int8:
            var rng = SeededRandom(seed: seed, stream: 0x5155_414E, round, UInt64(client))
            var scales: [Float] = [], values = [Int8](repeating: 0, count: count)
            for (offset, length) in segments {
                var largest: Float = 0
                for i in offset..<(offset + length) { largest = max(largest, abs(delta[i])) }
                let scale = largest / 127
                scales.append(scale)
                guard scale > 0 else { continue }
                for i in offset..<(offset + length) {
                    // Stochastic rounding: up with probability equal to the fraction, so the expected value is exact.
                    let q = (delta[i] / scale + rng.nextUnitFloat()).rounded(.down)
                    values[i] = Int8(max(-127, min(127, q)))
                }
            }
            return .int8(scales: scales, lengths: segments.map { UInt32($0.count) }, values: values)
        case .topk:
            let residual = residuals[slot]
            if residual.values.count == count { for i in 0..<count { delta[i] += residual.values[i] } }
            let k = max(1, Int((spec.fraction! * Double(count)).rounded()))
            let chosen = Self.largest(k, of: delta)
            residual.values = delta
            for i in chosen { residual.values[Int(i)] = 0 }
            return .sparse(count: UInt32(count), indices: chosen, values: chosen.map { delta[Int($0)] })
        }
    }

    /// Indices of the `k` entries of largest magnitude, in increasing order (ties: the earlier ones), found by
    /// quickselect on the magnitudes.
    static func largest(_ k: Int, of values: [Float]) -> [UInt32] {
        guard k < values.count else { return (0..<values.count).map(UInt32.init) }
        var magnitudes = values.map(abs)
        var low = 0, high = magnitudes.count - 1, target = k - 1  // the k-th largest sits at index k − 1 in descending order
        var rng = SeededRandom(seed: 1, stream: 0x5345_4C45)
        while low < high {
            magnitudes.swapAt(low + rng.next(below: high - low + 1), high)
            let pivot = magnitudes[high]
            var store = low
            for i in low..<high where magnitudes[i] > pivot {
                magnitudes.swapAt(i, store)
                store += 1
            }
            magnitudes.swapAt(store, high)
            if store == target { break } else if store < target { low = store + 1 } else { high = store - 1 }
        }
        let threshold = magnitudes[target]
        var above = values.indices.filter { abs(values[$0]) > threshold }
        let room = k - above.count
        above += values.indices.lazy.filter { abs(values[$0]) == threshold }.prefix(room)
        return above.sorted().map(UInt32.init)
    }
}
