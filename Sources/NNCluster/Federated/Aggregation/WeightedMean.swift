import NNCore
import NNProtocol

/// The sample-weighted mean (McMahan et al. 2017): FedAvg and FedProx, and the model that FedAvgM and FedAdam
/// step towards.
public struct WeightedMean: AggregationRule {
    public init() {}

    public func combine(_ models: [[Float]], weights: [Float], count: Int, into out: UnsafeMutablePointer<Float>) {
        BLAS.weightedSum(models, weights: weights, into: out, count: count)
    }
}

extension [ClientUpdate] {
    /// Each update's share of their samples: its weight in the mean.
    var sampleWeights: [Float] {
        let total = Double(reduce(0) { $0 + Int($1.samples) })
        return map { Float(Double($0.samples) / total) }
    }

    /// The updates as one, for `hostAggregation`: the sample-weighted mean of their models and states, named by the
    /// first client, with samples, loss and correct predictions summed. The mean of a single update is that update.
    func hostAggregate(computeNanoseconds: UInt64) -> ClientUpdate {
        let weights = sampleWeights
        func mean(_ vectors: [[Float]]) -> [Float] {
            let count = vectors[0].count
            guard count > 0 else { return [] }
            return [Float](unsafeUninitializedCapacity: count) { out, initialized in
                BLAS.weightedSum(vectors, weights: weights, into: out.baseAddress!, count: count)
                initialized = count
            }
        }
        return ClientUpdate(round: self[0].round, client: self[0].client, samples: reduce(0) { $0 + $1.samples },
                            correct: reduce(0) { $0 + $1.correct }, lossSum: reduce(0) { $0 + $1.lossSum },
                            computeNanoseconds: computeNanoseconds, parameters: mean(map(\.parameters)), state: mean(map(\.state)))
    }
}
