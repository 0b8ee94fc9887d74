/// FedTrimmedAvg: the mean of each coordinate after dropping ⌊trim · n⌋ largest and as many smallest values
/// (at most all but one); unweighted.
public struct TrimmedMean: AggregationRule {
    public let trim: Double
    public init(trim: Double) { self.trim = trim }

    public func combine(_ models: [[Float]], weights: [Float], count: Int, into out: UnsafeMutablePointer<Float>) {
        let n = models.count
        let cut = min(Int(trim * Double(n)), (n - 1) / 2)
        let kept = Float(n - 2 * cut)
        let column = UnsafeMutablePointer<Float>.allocate(capacity: n)
        defer { column.deallocate() }
        models.withUnsafeBuffers { models in
            for i in 0..<count {
                models.sortColumn(i, into: column)
                var sum: Float = 0
                for k in cut..<(n - cut) { sum += column[k] }
                out[i] = sum / kept
            }
        }
    }
}
