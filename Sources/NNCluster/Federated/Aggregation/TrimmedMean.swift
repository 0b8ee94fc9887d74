/// FedTrimmedAvg: the mean of each coordinate after dropping ⌊trim · n⌋ largest and as many smallest values
/// (at most all but one); unweighted.
public struct TrimmedMean: AggregationRule {
    public let trim: Double
    public init(trim: Double) { self.trim = trim }

    public func combine(_ models: [[Float]], weights: [Float], count: Int, into out: UnsafeMutablePointer<Float>) {
        let n = models.count
        let cut = min(Int(trim * Double(n)), (n - 1) / 2)
        let kept = Float(n - 2 * cut)
        var column = [Float](repeating: 0, count: n)
        models.withUnsafeBuffers { models in
            for i in 0..<count {
                for k in 0..<n { column[k] = models[k][i] }
                column.sort()
                var sum: Float = 0
                for k in cut..<(n - cut) { sum += column[k] }
                out[i] = sum / kept
            }
        }
    }
}
