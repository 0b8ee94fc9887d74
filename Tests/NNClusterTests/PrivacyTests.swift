import Foundation
import NNCluster
import NNCore
import NNProtocol
import Testing

/// DP-FedAvg: clipping, noise, the fixed denominator, Poisson sampling, and the accountant's shape.
@Suite struct PrivacyTests {
    /// A 6-input, 3-class model over `clients` clients of 10 samples each, all sampled every round.
    func strategy(_ privacy: PrivacySpec?, clients: Int = 4, fraction: Double = 1, strategy kind: StrategySpec = StrategySpec(kind: .fedavg)) throws -> FederatedAveraging {
        var experiment = Experiment(name: "dp", model: try ModelSpec(widths: [6, 5, 3]), partition: .iid, clients: clients, fraction: fraction,
                                    localEpochs: 1, localBatch: 5, learningRate: 0.1, rounds: 10, seed: 3, strategy: kind)
        experiment.privacy = privacy
        try experiment.validate()
        return try FederatedAveraging(experiment: experiment, network: Network(spec: experiment.model, seed: 3),
                                      partitions: (0..<clients).map { c in Array((c * 10)..<(c * 10 + 10)) })
    }

    /// Client models at the global model plus deltas of norms 0.5, 2, 8, 30 in random directions.
    func updates(around global: [Float], clients: Int = 4) -> [ClientUpdate] {
        var rng = SeededRandom(seed: 9, stream: 2)
        return (0..<clients).map { c in
            var delta = global.map { _ in rng.nextGaussian() }
            let norm = delta.reduce(0) { $0 + $1 * $1 }.squareRoot()
            let target = [0.5, 2, 8, 30][c % 4] as Float
            delta = delta.map { $0 * target / norm }
            return ClientUpdate(round: 0, client: UInt32(c), samples: 10, correct: 5, lossSum: 1, computeNanoseconds: 1,
                                parameters: zip(global, delta).map(+), state: [])
        }
    }

    func norm(_ a: [Float], _ b: [Float]) -> Float { zip(a, b).map { ($0 - $1) * ($0 - $1) }.reduce(0, +).squareRoot() }

    @Test func clippedUpdatesNeverExceedTheBound() throws {
        for clip: Float in [0.25, 1, 5, 100] {
            let dp = try strategy(PrivacySpec(clip: clip, noiseMultiplier: 0, sampling: .fixed), clients: 1)
            let global = dp.network.parameters.array
            for update in updates(around: global, clients: 4) {
                let one = try strategy(PrivacySpec(clip: clip, noiseMultiplier: 0, sampling: .fixed), clients: 1)
                var u = update
                u.client = 0
                let result = try one.aggregate(round: 0, results: [u], failures: [])
                let moved = norm(one.network.parameters.array, global)
                let asked = norm(u.parameters, global)
                #expect(moved <= clip * (1 + 1e-5), "clip \(clip): moved \(moved)")
                #expect(abs(moved - min(asked, clip)) <= 1e-4 * max(1, clip), "clip \(clip): moved \(moved), asked \(asked)")
                #expect(result.privacy?.clipped == (asked > clip ? 1 : 0))
            }
        }
    }

    /// With no noise and fixed-size sampling, DP-FedAvg is FedAvg (equal client sizes) of the clipped models.
    @Test func withoutNoiseItIsFedAvgOfClippedUpdates() throws {
        let clip: Float = 3
        let dp = try strategy(PrivacySpec(clip: clip, noiseMultiplier: 0, sampling: .fixed))
        let plain = try strategy(nil)
        let global = dp.network.parameters.array
        #expect(global == plain.network.parameters.array)
        let raw = updates(around: global)
        let clipped = raw.map { u -> ClientUpdate in
            var c = u
            let n = norm(u.parameters, global)
            let factor = n > clip ? clip / n : 1
            c.parameters = zip(u.parameters, global).map { $1 + ($0 - $1) * factor }
            return c
        }
        let tally = try dp.aggregate(round: 0, results: raw, failures: []).privacy!
        _ = try plain.aggregate(round: 0, results: clipped, failures: [])
        let a = dp.network.parameters.array, b = plain.network.parameters.array
        #expect(norm(a, b) <= 1e-5 * max(1, norm(b, global)), "\(norm(a, b))")
        #expect(tally.clipped == 2 && tally.updates == 4 && tally.epsilon == .infinity)
    }

    /// Noise: reproducible with a seed, different with another seed, and of the size the mechanism promises.
    @Test func noiseSeedsDifferAndNoiseHasItsScale() throws {
        func run(_ seed: UInt64?) throws -> [Float] {
            let s = try strategy(PrivacySpec(clip: 1, noiseMultiplier: 2, sampling: .fixed, noiseSeed: seed))
            _ = try s.aggregate(round: 0, results: updates(around: s.network.parameters.array), failures: [])
            return s.network.parameters.array
        }
        let a = try run(1), b = try run(1), c = try run(2), d = try run(nil), e = try run(nil)
        #expect(a == b)
        #expect(a != c && d != e)
        // The noise on the mean is N(0, (zS/m)²) per coordinate: z = 2, S = 1, m = 4 clients.
        let quiet = try strategy(PrivacySpec(clip: 1, noiseMultiplier: 0, sampling: .fixed))
        _ = try quiet.aggregate(round: 0, results: updates(around: quiet.network.parameters.array), failures: [])
        let noise = zip(c, quiet.network.parameters.array).map { Double($0 - $1) }
        let std = (noise.map { $0 * $0 }.reduce(0, +) / Double(noise.count)).squareRoot()
        #expect(abs(std - 0.5) < 0.1, "noise std \(std), expected 0.5 over \(noise.count) coordinates")
    }

    /// The divisor is the expected number of clients, not the number that answered: one client more or less
    /// changes the sum by at most S.
    @Test func denominatorIsFixed() throws {
        let s = try strategy(PrivacySpec(clip: 100, noiseMultiplier: 0, sampling: .fixed))
        let global = s.network.parameters.array
        let one = updates(around: global)[0]  // norm 0.5, unclipped
        _ = try s.aggregate(round: 0, results: [one], failures: [1, 2, 3])
        #expect(abs(norm(s.network.parameters.array, global) - 0.5 / 4) < 1e-5)
    }

    @Test func poissonSamplingTakesEachClientWithProbabilityC() throws {
        let s = try strategy(PrivacySpec(clip: 1, noiseMultiplier: 1, sampling: .poisson, noiseSeed: 4), clients: 200, fraction: 0.1)
        let hosted = Array(0..<200)
        let sizes = (0..<200).map { s.sample(round: $0, hosted: hosted).count }
        let mean = Double(sizes.reduce(0, +)) / Double(sizes.count)
        #expect(abs(mean - 20) < 1.5, "mean sample \(mean)")
        #expect(Set(sizes).count > 5, "sample sizes vary: \(Set(sizes))")
        #expect(s.sample(round: 7, hosted: hosted) == s.sample(round: 7, hosted: hosted))
        let secret = try strategy(PrivacySpec(clip: 1, noiseMultiplier: 1, sampling: .poisson), clients: 200, fraction: 0.1)
        #expect(secret.sample(round: 7, hosted: hosted) != secret.sample(round: 7, hosted: hosted))
    }

    /// Adaptive clipping moves S to the target quantile of the norms (0.5, 2, 8, 30: the median lies in (2, 8)) from
    /// far below and far above, and a run state carries S over.
    @Test func adaptiveClippingFollowsTheQuantile() throws {
        for start: Float in [0.01, 500] {
            let spec = PrivacySpec(clip: start, noiseMultiplier: 0, sampling: .fixed, noiseSeed: 2,
                                   adaptiveClip: .init(targetQuantile: 0.5, learningRate: 0.5, countNoise: 0.05))
            let s = try strategy(spec)
            for round in 0..<80 { _ = try s.aggregate(round: round, results: updates(around: s.network.parameters.array), failures: []) }
            #expect(s.clip > 2 && s.clip < 8, "from \(start): S = \(s.clip)")
            var state = RunState()
            s.save(into: &state)
            let resumed = try strategy(spec)
            try resumed.restore(from: state)
            #expect(resumed.clip == s.clip)
        }
        // The count's noise comes out of z: z_Δ = (z⁻² − (2σ_b)⁻²)^(−1/2), and σ_b must leave some.
        let spec = PrivacySpec(clip: 1, noiseMultiplier: 1, adaptiveClip: .init(countNoise: 2))
        #expect(abs(spec.updateNoiseMultiplier(expectedClients: 10) - 1 / (1 - 1.0 / 16).squareRoot()) < 1e-12)
        #expect(throws: ExperimentError.self) { try strategy(PrivacySpec(clip: 1, noiseMultiplier: 1, adaptiveClip: .init(countNoise: 0.4))) }
    }

    @Test func experimentsThatCannotBePrivateAreRefused() throws {
        #expect(throws: ExperimentError.self) { try strategy(PrivacySpec(clip: 1, noiseMultiplier: 1), strategy: StrategySpec(kind: .fedmedian)) }
        #expect(throws: ExperimentError.self) { try strategy(PrivacySpec(clip: 0, noiseMultiplier: 1)) }
        #expect(throws: ExperimentError.self) { try strategy(PrivacySpec(clip: 1, noiseMultiplier: 0, targetEpsilon: 5)) }
        #expect(throws: ExperimentError.self) { try strategy(PrivacySpec(clip: 1, noiseMultiplier: 0.3, targetEpsilon: 0.01), fraction: 0.5) }
        let text = #"{"name": "x", "model": "784-10", "partition": {"kind": "iid"}, "clients": 10, "fraction": 0.5, "localEpochs": 1, "localBatch": 10, "learningRate": 0.1, "rounds": 2, "privacy": {"clip": 1, "noiseMultiplier": 1, "noise": 2}}"#
        #expect(throws: ExperimentError.self) { try Experiment.decode(Data(text.utf8), source: "x.json") }
    }

    @Test func accountantBehaves() {
        let base = RDPAccountant(samplingRate: 0.01, noiseMultiplier: 1.1)
        let e100 = base.epsilon(rounds: 100, delta: 1e-5).epsilon, e1000 = base.epsilon(rounds: 1000, delta: 1e-5).epsilon
        #expect(e100 > 0 && e100 < e1000)
        #expect(RDPAccountant(samplingRate: 0.01, noiseMultiplier: 2).epsilon(rounds: 1000, delta: 1e-5).epsilon < e1000)
        #expect(RDPAccountant(samplingRate: 0.1, noiseMultiplier: 1.1).epsilon(rounds: 1000, delta: 1e-5).epsilon > e1000)
        // No sampling: the Gaussian mechanism's RDP is α/(2z²) per round, so ε = min over α of Tα/(2z²) + log terms.
        let full = RDPAccountant(samplingRate: 1, noiseMultiplier: 5, orders: [2, 4, 8])
        let (epsilon, order) = full.epsilon(rounds: 10, delta: 1e-5)
        func bound(_ a: Double) -> Double {
            let rdp: Double = 10 * a / 50
            let conversion: Double = log1p(-1 / a) - log(1e-5 * a) / (a - 1)
            return rdp + conversion
        }
        let expected = [2.0, 4, 8].map(bound).min()!
        #expect(abs(epsilon - expected) < 1e-12 && [2, 4, 8].contains(order))
    }
}
