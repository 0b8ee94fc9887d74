/// How clients send their updates (the `compression` object of an experiment file): the change of their model
/// (trained minus global) as int8 with a scale per tensor and stochastic rounding, or as its top-k entries by
/// magnitude with the rest carried over to the client's next update (error feedback).
public struct CompressionSpec: Codable, Equatable, Sendable {
    public enum Kind: String, Codable, CaseIterable, Sendable { case int8, topk }
    public var kind: Kind
    /// top-k: the fraction of entries sent.
    public var fraction: Double?

    public init(kind: Kind, fraction: Double? = nil) { self.kind = kind; self.fraction = fraction }

    enum CodingKeys: String, CodingKey, CaseIterable { case kind, fraction }

    func validate() throws {
        switch kind {
        case .int8:
            if fraction != nil { throw ExperimentError("compression of kind 'int8' takes no 'fraction'") }
        case .topk:
            guard let fraction, fraction > 0, fraction <= 1 else { throw ExperimentError("compression of kind 'topk' needs a fraction in (0, 1]") }
        }
    }
}
