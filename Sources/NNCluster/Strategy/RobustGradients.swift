import NNCore

/// How synchronous SGD combines its workers' gradients when it cannot trust every one of them (a bug, bad
/// memory, a compromised host): not the exact mean, so it is off by default. Each step, a gradient whose norm
/// exceeds `factor` times the step's median norm is an outlier: the norm bound scales it down to the median norm;
/// the median and the trimmed mean set it aside and combine the others coordinate by coordinate, which also
/// outvotes a wrong gradient of ordinary norm.
public struct RobustGradients: Codable, Equatable, Sendable {
    public enum Rule: String, Codable, CaseIterable, Sendable {
        /// The sample-weighted mean, with each outlier scaled down to the median norm.
        case normBound = "norm-bound"
        /// The coordinate-wise median (needs 3 or more workers).
        case median
        /// The coordinate-wise mean without the ⌊trim · n⌋ largest and smallest values (needs 3 or more workers).
        case trimmedMean = "trimmed-mean"
    }
    public var rule: Rule
    public var factor: Float
    public var trim: Double

    public init(rule: Rule, factor: Float = 3, trim: Double = 0.2) { self.rule = rule; self.factor = factor; self.trim = trim }

    /// Fewest workers the rule works with.
    public var minimumWorkers: Int { rule == .normBound ? 1 : 3 }

    /// Combines `gradients` (with sample `weights` summing to 1) into `out`; returns the indices of the flagged ones.
    func combine(_ gradients: [[Float]], weights: [Float], count: Int, into out: UnsafeMutablePointer<Float>) -> [Int] {
        let norms = gradients.map { g in g.withUnsafeBufferPointer { Float(BLAS.sumOfSquares($0.baseAddress!, count: count).squareRoot()) } }
        let median = norms.sorted()[(norms.count - 1) / 2]
        let bound = factor * median
        let flagged = norms.indices.filter { norms[$0] > bound }
        switch rule {
        case .normBound:
            let scaled = zip(weights, norms).map { weight, norm in norm > bound ? weight * median / norm : weight }
            BLAS.weightedSum(gradients, weights: scaled, into: out, count: count)
        case .median, .trimmedMean:
            let kept = norms.indices.filter { norms[$0] <= bound }
            let rule: AggregationRule = self.rule == .median ? CoordinateMedian() : TrimmedMean(trim: trim)
            rule.combine(kept.map { gradients[$0] }, weights: kept.map { weights[$0] }, count: count, into: out)
        }
        return flagged
    }
}
