/// FedMedian (Yin et al. 2018): the median of each coordinate (the mean of the middle two for an even count);
/// unweighted, so a minority of arbitrary models cannot move it far.
public struct CoordinateMedian: AggregationRule {
    public init() {}

    public func combine(_ models: [[Float]], weights: [Float], count: Int, into out: UnsafeMutablePointer<Float>) {
        let n = models.count
        let column = UnsafeMutablePointer<Float>.allocate(capacity: n)
        defer { column.deallocate() }
        models.withUnsafeBuffers { models in
            for i in 0..<count {
                models.sortColumn(i, into: column)
                out[i] = n % 2 == 1 ? column[n / 2] : (column[n / 2 - 1] + column[n / 2]) / 2
            }
        }
    }
}
