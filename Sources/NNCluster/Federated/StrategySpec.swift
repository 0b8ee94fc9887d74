import NNCore

/// How the coordinator turns client models into the next global model (Flower's strategy names).
public struct StrategySpec: Codable, Equatable, Sendable {
    public enum Kind: String, Codable, CaseIterable, Sendable {
        /// Sample-weighted mean (McMahan et al. 2017).
        case fedavg
        /// FedAvg whose clients add (μ/2)‖w − w_global‖² to their loss (Li et al. 2020).
        case fedprox
        /// Server momentum on the averaged update (Hsu et al. 2019).
        case fedavgm
        /// Server-side Adam on the averaged update (Reddi et al. 2021).
        case fedadam
        /// Coordinate-wise median of the client models (Yin et al. 2018).
        case fedmedian
        /// Coordinate-wise mean after dropping the `trim` fraction of largest and of smallest values.
        case fedtrimmedavg
    }

    public var kind: Kind
    public var mu: Float?
    public var serverLearningRate: Float?
    public var serverMomentum: Float?
    public var beta1: Float?
    public var beta2: Float?
    public var tau: Float?
    public var trim: Double?

    public init(kind: Kind, mu: Float? = nil, serverLearningRate: Float? = nil, serverMomentum: Float? = nil,
                beta1: Float? = nil, beta2: Float? = nil, tau: Float? = nil, trim: Double? = nil) {
        self.kind = kind; self.mu = mu; self.serverLearningRate = serverLearningRate; self.serverMomentum = serverMomentum
        self.beta1 = beta1; self.beta2 = beta2; self.tau = tau; self.trim = trim
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case kind, mu, serverLearningRate, serverMomentum, beta1, beta2, tau, trim }

    /// The strategy's aggregation rule and server optimizer: the one place its kind picks them.
    func components(parameterCount: Int) -> (rule: AggregationRule, server: ServerOptimizer?) {
        switch kind {
        case .fedavg, .fedprox:
            return (WeightedMean(), nil)
        case .fedavgm:
            return (WeightedMean(), ServerOptimizer(OptimizerSettings(kind: .momentum, momentum: momentum),
                                                    learningRate: serverRate, parameterCount: parameterCount))
        case .fedadam:
            return (WeightedMean(), ServerOptimizer(OptimizerSettings(kind: .adam, beta1: beta1 ?? 0.9, beta2: beta2 ?? 0.99, epsilon: adamTau),
                                                    learningRate: serverRate, parameterCount: parameterCount))
        case .fedmedian:
            return (CoordinateMedian(), nil)
        case .fedtrimmedavg:
            return (TrimmedMean(trim: trimFraction), nil)
        }
    }

    // The defaults of the optional fields, used by `components` and `description`.
    private var serverRate: Float { serverLearningRate ?? (kind == .fedadam ? 0.01 : 1) }
    private var momentum: Float { serverMomentum ?? 0.9 }
    private var adamTau: Float { tau ?? 1e-3 }
    private var trimFraction: Double { trim ?? 0.2 }

    /// True when the rule is the sample-weighted mean, which partial means can be combined into.
    public var isWeightedMean: Bool { components(parameterCount: 0).rule is WeightedMean }

    /// μ of FedProx; 0 for the others.
    public var proximalMu: Float { kind == .fedprox ? mu ?? 0.01 : 0 }

    func validate(clientsPerRound: Int) throws {
        let given: [(String, Bool)] = [("mu", mu != nil), ("serverLearningRate", serverLearningRate != nil),
                                       ("serverMomentum", serverMomentum != nil), ("beta1", beta1 != nil), ("beta2", beta2 != nil),
                                       ("tau", tau != nil), ("trim", trim != nil)]
        let allowed: Set<String> = switch kind {
        case .fedavg, .fedmedian: []
        case .fedprox: ["mu"]
        case .fedavgm: ["serverLearningRate", "serverMomentum"]
        case .fedadam: ["serverLearningRate", "beta1", "beta2", "tau"]
        case .fedtrimmedavg: ["trim"]
        }
        if let stray = given.first(where: { $0.1 && !allowed.contains($0.0) }) {
            throw ExperimentError("strategy '\(kind.rawValue)' takes no '\(stray.0)'")
        }
        func check(_ ok: Bool, _ text: String) throws { if !ok { throw ExperimentError(text) } }
        try check((mu ?? 0) >= 0, "mu cannot be negative")
        try check((serverLearningRate ?? 1) > 0, "serverLearningRate must be positive")
        try check((0..<1).contains(serverMomentum ?? 0), "serverMomentum must be in [0, 1)")
        try check((0..<1).contains(beta1 ?? 0) && (0..<1).contains(beta2 ?? 0), "beta1 and beta2 must be in [0, 1)")
        try check((tau ?? 1) > 0, "tau must be positive")
        try check((0..<0.5).contains(trim ?? 0), "trim must be in [0, 0.5)")
    }

    public var description: String {
        switch kind {
        case .fedavg: return "FedAvg"
        case .fedprox: return "FedProx (μ = \(proximalMu))"
        case .fedavgm: return "FedAvgM (server rate \(serverRate), momentum \(momentum))"
        case .fedadam: return "FedAdam (server rate \(serverRate), τ = \(adamTau))"
        case .fedmedian: return "FedMedian"
        case .fedtrimmedavg: return "FedTrimmedAvg (trim \(trimFraction))"
        }
    }
}
