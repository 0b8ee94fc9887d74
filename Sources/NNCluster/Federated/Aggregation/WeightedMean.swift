import NNCore

/// The sample-weighted mean (McMahan et al. 2017): FedAvg and FedProx, and the model that FedAvgM and FedAdam
/// step towards.
public struct WeightedMean: AggregationRule {
    public init() {}

    public func combine(_ models: [[Float]], weights: [Float], count: Int, into out: UnsafeMutablePointer<Float>) {
        BLAS.weightedSum(models, weights: weights, into: out, count: count)
    }
}
