import NNCore

/// Adversarial clients for robustness experiments: a seeded `fraction` of the K clients replace their trained
/// model w with w_global + scale·(w − w_global) (`scale`) or with Gaussian noise of standard deviation `noise`
/// (`random`) before sending it.
public struct AdversarySpec: Codable, Equatable, Sendable {
    public enum Kind: String, Codable, CaseIterable, Sendable { case scale, random }
    public var fraction: Double
    public var kind: Kind
    public var scale: Float?
    public var noise: Float?

    public init(fraction: Double, kind: Kind, scale: Float? = nil, noise: Float? = nil) {
        self.fraction = fraction; self.kind = kind; self.scale = scale; self.noise = noise
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case fraction, kind, scale, noise }

    func validate() throws {
        guard fraction >= 0 && fraction <= 1 else { throw ExperimentError("adversaries.fraction must be in [0, 1]") }
        if kind == .scale, noise != nil { throw ExperimentError("adversaries of kind 'scale' take no 'noise'") }
        if kind == .random, scale != nil { throw ExperimentError("adversaries of kind 'random' take no 'scale'") }
        if let noise, !(noise > 0) { throw ExperimentError("adversaries.noise must be positive") }
        if let scale, !scale.isFinite { throw ExperimentError("adversaries.scale must be finite") }
    }

    /// The adversarial clients among `clients`: a seeded choice of round(fraction · clients).
    public func members(clients: Int, seed: UInt64) -> Set<Int> {
        var ids = Array(0..<clients)
        var rng = SeededRandom(seed: seed, stream: 0x4144_5653)
        rng.shuffle(&ids)
        return Set(ids.prefix(Int((fraction * Double(clients)).rounded())))
    }
}
