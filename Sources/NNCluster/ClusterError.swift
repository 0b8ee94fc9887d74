import NNCore

/// A failure of the cluster layer: a transport, the coordinator's run, a worker's session, a rejected result.
public struct ClusterError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A result with NaN or infinite values, or values beyond `largestValue`: a bad peer, or a model that diverged.
public struct NonFiniteResult: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }

    /// No gradient, weight or batch-norm statistic of a working model comes near this; a value beyond it (a peer
    /// sending 1e38) would overflow the optimizer's state and freeze or kill the model.
    public static let largestValue: Float = 1e15

    /// Throws unless every value is finite and at most `largestValue` in magnitude, and the loss sum finite and
    /// not negative (every loss is).
    static func check(_ vectors: [[Float]], lossSum: Double, what: String) throws {
        guard lossSum.isFinite, lossSum >= 0 else { throw NonFiniteResult("\(what): loss sum \(lossSum)") }
        for v in vectors {
            let m = v.withUnsafeBufferPointer(BLAS.maxMagnitude)
            guard m <= largestValue else {
                throw NonFiniteResult(m.isNaN ? "\(what) holds NaN or infinite values" : "\(what) holds a value of magnitude \(m), beyond \(largestValue)")
            }
        }
    }
}
