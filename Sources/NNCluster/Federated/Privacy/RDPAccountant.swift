import Foundation

/// ε of DP-FedAvg's Gaussian mechanism, by Rényi differential privacy: the RDP of the Poisson-subsampled Gaussian
/// mechanism at sampling rate q and noise multiplier z (Mironov, Talwar and Zhang 2019: integer orders by the
/// binomial expansion, fractional orders by the two-sided series of their Section 3.3), composed over rounds by
/// adding, and turned into (ε, δ)-DP with the conversion of Balle et al. 2020 (Proposition 12), minimised over the
/// orders. The orders and formulas are those of Google's `dp-accounting` package, which
/// `Tests/interop/dp_accountant.py` checks this against.
public struct RDPAccountant: Sendable {
    public let samplingRate: Double
    public let noiseMultiplier: Double
    /// The orders α and the RDP of one round at each.
    public let orders: [Double]
    private let perRound: [Double]

    /// 1.1, 1.2, …, 10.9, 11, 12, …, 63, 128, 256, 512, 1024.
    public static let defaultOrders: [Double] = {
        let fractional: [Double] = (1..<100).map { 1 + Double($0) / 10 }
        let whole: [Double] = (11..<64).map { Double($0) }
        return fractional + whole + [128, 256, 512, 1024]
    }()

    public init(samplingRate q: Double, noiseMultiplier z: Double, orders: [Double] = RDPAccountant.defaultOrders) {
        precondition((0...1).contains(q) && z >= 0)
        samplingRate = q
        noiseMultiplier = z
        self.orders = orders
        perRound = orders.map { alpha in
            if q == 0 { return 0 }
            if z == 0 { return .infinity }
            if q == 1 { return alpha / (2 * z * z) }
            let logA = alpha == alpha.rounded() ? Self.logAInteger(q, z, Int(alpha)) : Self.logAFractional(q, z, alpha)
            return logA / (alpha - 1)
        }
    }

    /// (ε, the order that gives it) after `rounds` rounds, for `delta`.
    public func epsilon(rounds: Int, delta: Double) -> (epsilon: Double, order: Double) {
        precondition(delta > 0 && delta < 1)
        var best = (epsilon: Double.infinity, order: 0.0)
        for (alpha, r1) in zip(orders, perRound) {
            let r = r1 * Double(rounds)
            let epsilon: Double
            if r < 0 {
                epsilon = 0
            } else if delta * delta + expm1(-r) > 0 {
                epsilon = 0  // bounded through the KL divergence alone
            } else if alpha > 1.01 {
                epsilon = r + log1p(-1 / alpha) - log(delta * alpha) / (alpha - 1)
            } else {
                epsilon = .infinity
            }
            if epsilon < best.epsilon { best = (epsilon, alpha) }
        }
        return (max(0, best.epsilon), best.order)
    }

    // MARK: The subsampled Gaussian's A_α

    /// log A_α for integer α: log Σᵢ C(α, i) qⁱ (1 − q)^(α−i) exp((i² − i) / 2σ²).
    static func logAInteger(_ q: Double, _ sigma: Double, _ alpha: Int) -> Double {
        var logA = -Double.infinity
        let logQ = log(q), log1mq = log1p(-q)
        for i in 0...alpha {
            let coefficient = logBinomial(Double(alpha), Double(i)) + Double(i) * logQ + Double(alpha - i) * log1mq
            logA = logAdd(logA, coefficient + Double(i * i - i) / (2 * sigma * sigma))
        }
        return logA
    }

    /// log A_α for fractional α: the integrals over (−∞, z₀] and [z₀, ∞) as series, summed until both terms fall
    /// 30 nats below the total while decreasing (at most 1000 terms; an order that does not converge is left out).
    static func logAFractional(_ q: Double, _ sigma: Double, _ alpha: Double) -> Double {
        var logA0 = -Double.infinity, logA1 = -Double.infinity
        let z0 = sigma * sigma * log(1 / q - 1) + 0.5
        let logQ = log(q), log1mq = log1p(-q)
        var lastS0 = -Double.infinity, lastS1 = -Double.infinity
        for step in 0..<1000 {
            let i = Double(step), j = alpha - i
            let coefficient = logBinomial(alpha, i)
            let logT0 = coefficient + i * logQ + j * log1mq
            let logT1 = coefficient + j * logQ + i * log1mq
            let logE0 = log(0.5) + logErfc((i - z0) / (2.0.squareRoot() * sigma))
            let logE1 = log(0.5) + logErfc((z0 - j) / (2.0.squareRoot() * sigma))
            let logS0 = logT0 + (i * i - i) / (2 * sigma * sigma) + logE0
            let logS1 = logT1 + (j * j - j) / (2 * sigma * sigma) + logE1
            logA0 = logAdd(logA0, logS0)
            logA1 = logAdd(logA1, logS1)
            let total = logAdd(logA0, logA1)
            if logS0 < lastS0 && logS1 < lastS1 && max(logS0, logS1) < total - 30 { return total }
            lastS0 = logS0
            lastS1 = logS1
        }
        return .infinity
    }

    static func logAdd(_ x: Double, _ y: Double) -> Double {
        let a = min(x, y), b = max(x, y)
        return a == -.infinity ? b : log1p(exp(a - b)) + b
    }

    /// log C(n, k) for real n and k (through log Γ; C(α, i) of a fractional α may be negative, and only its
    /// magnitude enters, as in the reference).
    static func logBinomial(_ n: Double, _ k: Double) -> Double { lgamma(n + 1) - lgamma(k + 1) - lgamma(n - k + 1) }

    /// log erfc(x), also where erfc underflows (its asymptotic series at infinity).
    static func logErfc(_ x: Double) -> Double {
        let r = erfc(x)
        if r > 0 { return log(r) }
        let x2 = x * x
        return -log(Double.pi) / 2 - log(x) - x2 - 0.5 / x2 + 0.625 / (x2 * x2) - 37.0 / 24.0 / (x2 * x2 * x2) + 353.0 / 64.0 / (x2 * x2 * x2 * x2)
    }
}
