import Foundation

/// Client-level differential privacy for an experiment (DP-FedAvg, McMahan et al. 2018): the `privacy` object of an
/// experiment file. Each sampled client's update (its model minus the global model) is clipped to L2 norm `clip`;
/// Gaussian noise of standard deviation `noiseMultiplier` × `clip` is added to their sum, which is divided by the
/// expected number of clients a round, whatever number answered.
public struct PrivacySpec: Codable, Equatable, Sendable {
    public enum Sampling: String, Codable, Sendable, CaseIterable {
        /// Each client joins a round independently with probability `fraction`: what the accountant assumes.
        case poisson
        /// Exactly max(⌈C·K⌉, 1) clients a round, as without privacy; ε is then reported by the Poisson accountant
        /// at q = C, a close approximation but not a proof.
        case fixed
    }

    /// S.
    public var clip: Float
    /// z.
    public var noiseMultiplier: Double
    public var sampling: Sampling = .poisson
    public var delta: Double = 1e-5
    /// The run stops before a round that would take ε past this.
    public var targetEpsilon: Double?
    /// Makes the noise and the Poisson sample reproducible, for experiments only: whoever knows the seed can take
    /// the noise out. Without it both come from the operating system's random source.
    public var noiseSeed: UInt64?
    /// Lets S follow a quantile of the update norms instead of staying at `clip` (its starting value).
    public var adaptiveClip: AdaptiveClip?

    /// Adaptive clipping (Andrew et al. 2021): each round, the fraction b̄ of updates no longer than S, counted with
    /// Gaussian noise of standard deviation `countNoise` and divided by the expected clients, moves S geometrically
    /// towards the `targetQuantile` of the norms, S ← S·exp(−η(b̄ − γ)). The count's noise is paid for out of z:
    /// the updates get z_Δ = (z⁻² − (2·countNoise)⁻²)^(−1/2), so the round is still a Gaussian mechanism of z.
    public struct AdaptiveClip: Codable, Equatable, Sendable {
        /// γ.
        public var targetQuantile: Double = 0.5
        /// η.
        public var learningRate: Double = 0.2
        /// σ_b; default: the expected clients a round / 20, as in the paper.
        public var countNoise: Double?

        public init(targetQuantile: Double = 0.5, learningRate: Double = 0.2, countNoise: Double? = nil) {
            self.targetQuantile = targetQuantile; self.learningRate = learningRate; self.countNoise = countNoise
        }

        enum CodingKeys: String, CodingKey, CaseIterable { case targetQuantile, learningRate, countNoise }

        public init(from decoder: Decoder) throws {
            try StrictKeys.check(decoder, CodingKeys.self, in: "privacy.adaptiveClip")
            let c = try decoder.container(keyedBy: CodingKeys.self)
            targetQuantile = try c.decodeIfPresent(Double.self, forKey: .targetQuantile) ?? targetQuantile
            learningRate = try c.decodeIfPresent(Double.self, forKey: .learningRate) ?? learningRate
            countNoise = try c.decodeIfPresent(Double.self, forKey: .countNoise)
        }
    }

    /// σ_b for `expectedClients` a round.
    func countNoise(expectedClients: Double) -> Double? {
        adaptiveClip.map { $0.countNoise ?? expectedClients / 20 }
    }

    /// z_Δ, the noise multiplier of the updates: z, less what the clipped-count query takes.
    public func updateNoiseMultiplier(expectedClients: Double) -> Double {
        guard let sigmaB = countNoise(expectedClients: expectedClients), noiseMultiplier > 0 else { return noiseMultiplier }
        return 1 / (1 / (noiseMultiplier * noiseMultiplier) - 1 / (4 * sigmaB * sigmaB)).squareRoot()
    }

    public init(clip: Float, noiseMultiplier: Double, sampling: Sampling = .poisson, delta: Double = 1e-5,
                targetEpsilon: Double? = nil, noiseSeed: UInt64? = nil, adaptiveClip: AdaptiveClip? = nil) {
        self.clip = clip; self.noiseMultiplier = noiseMultiplier; self.sampling = sampling; self.delta = delta
        self.targetEpsilon = targetEpsilon; self.noiseSeed = noiseSeed; self.adaptiveClip = adaptiveClip
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case clip, noiseMultiplier, sampling, delta, targetEpsilon, noiseSeed, adaptiveClip }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        clip = try c.decode(Float.self, forKey: .clip)
        noiseMultiplier = try c.decode(Double.self, forKey: .noiseMultiplier)
        sampling = try c.decodeIfPresent(Sampling.self, forKey: .sampling) ?? sampling
        delta = try c.decodeIfPresent(Double.self, forKey: .delta) ?? delta
        targetEpsilon = try c.decodeIfPresent(Double.self, forKey: .targetEpsilon)
        noiseSeed = try c.decodeIfPresent(UInt64.self, forKey: .noiseSeed)
        adaptiveClip = try c.decodeIfPresent(AdaptiveClip.self, forKey: .adaptiveClip)
    }

    func validate(strategy: StrategySpec, samplingRate: Double, expectedClients: Double) throws {
        func check(_ condition: Bool, _ text: String) throws { if !condition { throw ExperimentError("privacy: \(text)") } }
        try check(clip > 0 && clip.isFinite, "clip must be a positive number")
        try check(noiseMultiplier >= 0 && noiseMultiplier.isFinite, "noiseMultiplier must be 0 or more")
        try check(delta > 0 && delta < 1, "delta must be in (0, 1)")
        try check(targetEpsilon.map { $0 > 0 && $0.isFinite } ?? true, "targetEpsilon must be a positive number")
        try check(targetEpsilon == nil || noiseMultiplier > 0, "targetEpsilon needs noise: with noiseMultiplier 0, ε is infinite")
        if let targetEpsilon, noiseMultiplier > 0 {
            let first = accountant(samplingRate: samplingRate).epsilon(rounds: 1, delta: delta).epsilon
            try check(first <= targetEpsilon, "one round already spends ε = \(first), more than targetEpsilon \(targetEpsilon): add noise or lower the fraction")
        }
        if let adaptive = adaptiveClip {
            try check(adaptive.targetQuantile > 0 && adaptive.targetQuantile < 1, "adaptiveClip.targetQuantile must be in (0, 1)")
            try check(adaptive.learningRate > 0 && adaptive.learningRate.isFinite, "adaptiveClip.learningRate must be positive")
            let sigmaB = countNoise(expectedClients: expectedClients)!
            try check(sigmaB > 0 && sigmaB.isFinite, "adaptiveClip.countNoise must be positive")
            try check(noiseMultiplier == 0 || 2 * sigmaB > noiseMultiplier,
                      "adaptiveClip.countNoise \(sigmaB) leaves no noise for the updates: it must exceed noiseMultiplier / 2 = \(noiseMultiplier / 2)")
        }
        try check(![.fedmedian, .fedtrimmedavg].contains(strategy.kind),
                  "\(strategy.kind.rawValue) is not a sum of the updates, so the noise does not bound what one client changes; use fedavg, fedprox, fedavgm or fedadam")
    }

    /// The accountant for this mechanism at sampling rate `q` (the experiment's fraction).
    func accountant(samplingRate q: Double) -> RDPAccountant { RDPAccountant(samplingRate: q, noiseMultiplier: noiseMultiplier) }
}
