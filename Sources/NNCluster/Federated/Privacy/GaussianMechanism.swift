import CSodium
import Foundation
import NNCore

/// DP-FedAvg's aggregate: global + (Σᵢ clip(Δᵢ, S) + N(0, (zS)² I)) / denominator, with Δᵢ a client's model minus the
/// global model and clip(Δ, S) = Δ · min(1, S / ‖Δ‖₂).
struct GaussianMechanism {
    /// z of the updates (z_Δ with adaptive clipping).
    let noiseMultiplier: Double
    /// The expected number of clients a round: fixed, so one client's presence changes the sum, not the divisor.
    let denominator: Double

    /// Writes the aggregate of `models` around `global`, clipped to `clip`, into `output`; returns how many updates
    /// were clipped and every update's norm.
    func aggregate(global: UnsafePointer<Float>, models: [[Float]], count: Int, clip: Float, noise: inout PrivacyRandom,
                   into output: UnsafeMutablePointer<Float>) -> (clipped: Int, norms: [Double]) {
        var sum = [Double](repeating: 0, count: count)
        var clipped = 0, norms: [Double] = []
        for model in models {
            var squares = 0.0
            for j in 0..<count { let d = Double(model[j] - global[j]); squares += d * d }
            let norm = squares.squareRoot()
            norms.append(norm)
            let factor = norm > Double(clip) ? Double(clip) / norm : 1
            if factor < 1 { clipped += 1 }
            for j in 0..<count { sum[j] += Double(model[j] - global[j]) * factor }
        }
        finish(sum: &sum, global: global, clip: clip, noise: &noise, into: output)
        return (clipped, norms)
    }

    /// Adds the noise to a sum of clipped changes and writes global + sum / denominator into `output`.
    func finish(sum: inout [Double], global: UnsafePointer<Float>, clip: Float, noise: inout PrivacyRandom, into output: UnsafeMutablePointer<Float>) {
        let sigma = noiseMultiplier * Double(clip)
        if sigma > 0 {
            for j in sum.indices { sum[j] += sigma * noise.gaussian() }
        }
        for j in sum.indices { output[j] = global[j] + Float(sum[j] / denominator) }
    }
}

/// The randomness of the privacy mechanism (noise, Poisson sample): ChaCha20 output of libsodium under a key that is
/// fresh from the operating system, or, for a reproducible experiment, derived (BLAKE2b) from a seed, the round and
/// the purpose.
struct PrivacyRandom {
    private var words: [UInt64]
    private var next = 0
    private var spare: Double?

    init(seed: UInt64?, round: Int, purpose: UInt64, words count: Int) {
        precondition(sodium_init() >= 0)
        var key = [UInt8](repeating: 0, count: Int(randombytes_SEEDBYTES))
        if let seed {
            let input = [seed, UInt64(round), purpose].flatMap { withUnsafeBytes(of: $0.littleEndian, Array.init) }
            _ = crypto_generichash(&key, key.count, input, UInt64(input.count), nil, 0)
        } else {
            randombytes_buf(&key, key.count)
        }
        words = [UInt64](repeating: 0, count: max(count, 1))
        words.withUnsafeMutableBytes { randombytes_buf_deterministic($0.baseAddress!, $0.count, key) }
    }

    /// Uniform in [0, 1), 53 bits.
    mutating func uniform() -> Double {
        precondition(next < words.count, "more random numbers drawn than were asked for")
        defer { next += 1 }
        return Double(words[next] >> 11) * 0x1p-53
    }

    /// Standard normal, by Box–Muller in pairs.
    mutating func gaussian() -> Double {
        if let s = spare { spare = nil; return s }
        let u1 = 1 - uniform(), u2 = uniform()
        let r = (-2 * log(u1)).squareRoot()
        spare = r * sin(2 * .pi * u2)
        return r * cos(2 * .pi * u2)
    }
}
