import Foundation

/// The training objective over the network's output (logits); it also fixes how outputs read as probabilities.
public enum Loss: String, Codable, CaseIterable, Sendable {
    /// Softmax fused with cross-entropy: log-sum-exp with the maximum subtracted, gradient softmax − onehot.
    case crossEntropy = "cross-entropy"
    /// Per-class sigmoid with binary cross-entropy against one-hot targets, computed from logits.
    case binaryCrossEntropy = "bce"
    /// Mean squared error between the raw outputs and one-hot targets.
    case meanSquaredError = "mse"

    /// Mean loss over the batch; writes d(mean loss)/d(logits) into `gradient` when given.
    public func evaluate(
        logits: UnsafePointer<Float>, labels: UnsafePointer<Int32>, batch: Int, classes: Int,
        gradient: UnsafeMutablePointer<Float>?
    ) -> Double {
        var total = 0.0
        let invBatch = 1 / Float(batch)
        for r in 0..<batch {
            let z = logits + r * classes
            let label = Int(labels[r])
            let g = gradient.map { $0 + r * classes }
            switch self {
            case .crossEntropy:
                var m = z[0]
                for j in 1..<classes { m = max(m, z[j]) }
                var sum: Float = 0
                for j in 0..<classes { sum += expf(z[j] - m) }
                let logSum = logf(sum)
                total += Double(logSum + m - z[label])
                if let g {
                    let invSum = 1 / sum
                    for j in 0..<classes { g[j] = expf(z[j] - m) * invSum * invBatch }
                    g[label] -= invBatch
                }
            case .binaryCrossEntropy:
                for j in 0..<classes {
                    let t: Float = j == label ? 1 : 0
                    // max(z, 0) − z·t + log(1 + e^−|z|) never overflows.
                    total += Double(max(z[j], 0) - z[j] * t + log1pf(expf(-abs(z[j]))))
                    if let g { g[j] = (1 / (1 + expf(-z[j])) - t) * invBatch }
                }
            case .meanSquaredError:
                let scale = invBatch / Float(classes)
                for j in 0..<classes {
                    let d = z[j] - (j == label ? 1 : 0)
                    total += Double(d * d / Float(classes))
                    if let g { g[j] = 2 * d * scale }
                }
            }
        }
        return total / Double(batch)
    }

    /// Class scores shown to a user: softmax for cross-entropy, per-class sigmoid for BCE, the regressed
    /// one-hot values for MSE.
    public func probabilities(_ logits: [Float]) -> [Float] {
        switch self {
        case .crossEntropy:
            let m = logits.max() ?? 0
            let e = logits.map { expf($0 - m) }
            let s = e.reduce(0, +)
            return e.map { $0 / s }
        case .binaryCrossEntropy: return logits.map { 1 / (1 + expf(-$0)) }
        case .meanSquaredError: return logits
        }
    }
}
