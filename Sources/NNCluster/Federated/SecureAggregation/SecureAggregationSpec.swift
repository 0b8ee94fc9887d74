import Foundation
import NNCore

/// Secure aggregation for an experiment (Bonawitz et al. 2017), the `secureAggregation` object of an experiment
/// file: clients mask their updates so that the coordinator learns only the sum of a round's updates, and a round
/// still completes when clients drop after masking, as long as `threshold` of them remain.
public struct SecureAggregationSpec: Codable, Equatable, Sendable {
    /// t as a fraction of the clients that sent keys in a round: t = max(2, ⌈threshold · n⌉) shares recover a
    /// secret, so up to n − t clients may drop after masking. Above ½, so that no two disjoint groups of clients
    /// could each unmask.
    public var threshold: Double = 2.0 / 3
    /// Each coordinate of a client's weighted change is clamped to ±range before it becomes an integer (with
    /// differential privacy the clip norm S bounds every coordinate, and is the range instead).
    public var range: Double = 1

    public init(threshold: Double = 2.0 / 3, range: Double = 1) { self.threshold = threshold; self.range = range }

    enum CodingKeys: String, CodingKey, CaseIterable { case threshold, range }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        threshold = try c.decodeIfPresent(Double.self, forKey: .threshold) ?? threshold
        range = try c.decodeIfPresent(Double.self, forKey: .range) ?? range
    }

    /// t for a round whose roster has `clients` clients.
    public func threshold(clients: Int) -> Int { max(2, Int((threshold * Double(clients)).rounded(.up))) }

    func validate(_ experiment: Experiment) throws {
        func check(_ condition: Bool, _ text: String) throws { if !condition { throw ExperimentError("secureAggregation: \(text)") } }
        try check(threshold > 0.5 && threshold <= 1, "threshold must be in (0.5, 1]")
        try check(range > 0 && range <= 1e6, "range must be in (0, 1e6]")
        try check(experiment.expectedClientsPerRound >= 3, "a round needs at least 3 clients: with 2, each could subtract its own update from the sum")
        try check(experiment.expectedClientsPerRound <= 200,
                  "a round may expect at most 200 clients (shares are numbered by a byte, so at most 255 take part, and Poisson sampling varies); this experiment expects \(experiment.expectedClientsPerRound)")
        try check(![.fedmedian, .fedtrimmedavg].contains(experiment.strategy.kind),
                  "\(experiment.strategy.kind.rawValue) needs every client's update, and the coordinator sees only their sum; use fedavg, fedprox, fedavgm or fedadam")
        try check(experiment.compression == nil, "compression and secure aggregation both encode the upload; choose one")
    }
}

/// A client's input to the sum: its change (trained − global; weighted by samples ÷ weight unit, or with privacy
/// clipped to norm S) as fixed-point integers modulo 2^32, followed by two counts that add up across clients: the
/// coordinates clamped to the range, and whether the change was clipped.
struct FixedPoint {
    let fractionBits: Int
    let range: Double

    /// The largest f ≤ 30 with clients · range · 2^f below 2^31: the sum of `clients` clamped values cannot wrap.
    static func fractionBits(clients: Int, range: Double) -> Int {
        min(30, max(0, Int(log2(Double(Int32.max) / (Double(clients) * range)).rounded(.down))))
    }

    var scale: Double { Double(1 << fractionBits) }

    /// The encoded input of a client; stochastic rounding from `random`, so the expected value is exact.
    func encode(trained: UnsafePointer<Float>, global: [Float], weight: Double, clip: Float, random: inout SeededRandom) -> [UInt32] {
        let count = global.count
        var change = [Double](repeating: 0, count: count)
        var squares = 0.0
        for i in 0..<count {
            change[i] = Double(trained[i] - global[i])
            squares += change[i] * change[i]
        }
        var factor = weight, clipped: UInt32 = 0
        if clip > 0, squares.squareRoot() > Double(clip) {
            factor *= Double(clip) / squares.squareRoot()
            clipped = 1
        }
        var out = [UInt32](repeating: 0, count: count + 2)
        var clamped: UInt32 = 0
        for i in 0..<count {
            var v = change[i] * factor
            if abs(v) > range { v = v < 0 ? -range : range; clamped += 1 }
            let q = (v * scale + Double(random.nextUnitFloat())).rounded(.down)
            out[i] = UInt32(bitPattern: Int32(q))
        }
        out[count] = clamped
        out[count + 1] = clipped
        return out
    }

    /// The sum of the changes, and the two counts, from the sum of the inputs.
    func decode(_ sum: [UInt32]) -> (change: [Double], clamped: Int, clipped: Int) {
        let count = sum.count - 2
        let change = sum[..<count].map { Double(Int32(bitPattern: $0)) / scale }
        return (change, Int(sum[count]), Int(sum[count + 1]))
    }
}
