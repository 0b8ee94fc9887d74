import ArgumentParser
import Foundation
import NNCluster

public struct PrivacyCommand: AsyncParsableCommand {
    public init() {}
    public static let configuration = CommandConfiguration(
        commandName: "privacy",
        abstract: "ε of DP-FedAvg for a sampling rate, a noise multiplier and a number of rounds (RDP accountant).",
        discussion: "Plans a differentially private experiment before running it: the ε each round count spends at δ.")

    @Option(help: "Probability q that a client is sampled in a round (Poisson sampling).")
    var samplingRate: Double

    @Option(help: "Noise multiplier z: the noise's standard deviation over the clipping norm.")
    var noise: Double

    @Option(parsing: .upToNextOption, help: "Round counts to report.")
    var rounds: [Int]

    @Option(help: "δ.")
    var delta: Double = 1e-5

    @Flag(help: "One JSON object per round count.")
    var json = false

    public func validate() throws {
        guard samplingRate > 0 && samplingRate <= 1 else { throw ValidationError("--sampling-rate must be in (0, 1]") }
        guard noise > 0 && noise.isFinite else { throw ValidationError("--noise must be a positive number (z = 0 gives no privacy: ε = ∞)") }
        guard !rounds.isEmpty, rounds.allSatisfy({ $0 >= 1 }) else { throw ValidationError("--rounds takes one or more positive round counts") }
        guard delta > 0 && delta < 1 else { throw ValidationError("--delta must be in (0, 1)") }
    }

    public func run() async throws {
        let accountant = RDPAccountant(samplingRate: samplingRate, noiseMultiplier: noise)
        for t in rounds {
            let (epsilon, order) = accountant.epsilon(rounds: t, delta: delta)
            if json {
                print(#"{"delta":\#(delta),"epsilon":\#(epsilon),"noise":\#(noise),"order":\#(order),"rounds":\#(t),"sampling_rate":\#(samplingRate)}"#)
            } else {
                print(String(format: "q %g, z %g, %d rounds: ε = %.4f at δ = %g (order %g)", samplingRate, noise, t, epsilon, delta, order))
            }
        }
    }
}
