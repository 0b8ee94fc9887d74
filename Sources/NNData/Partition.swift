import Foundation
import NNCore

/// How a training set is split among federated clients. Every scheme puts each sample in exactly one client
/// and depends only on the labels, the client count and the seed, so every process computes the same split.
public struct PartitionSpec: Codable, Equatable, Sendable, CustomStringConvertible {
    public enum Kind: String, Codable, CaseIterable, Sendable {
        /// A seeded shuffle cut into near-equal parts.
        case iid
        /// McMahan et al.'s pathological non-IID split: sort by label, cut into clients × `shardsPerClient`
        /// equal shards, deal each client `shardsPerClient` of them at random.
        case shards
        /// Per class, proportions over the clients drawn from Dirichlet(`alpha`); small alpha, few labels a client.
        case dirichlet
        /// IID content, sizes proportional to exp(`sigma` · N(0, 1)): unbalanced clients.
        case lognormal
    }

    /// The file keys (experiment files check for unknown ones against this list).
    public enum CodingKeys: String, CodingKey, CaseIterable { case kind, shardsPerClient, alpha, minimumSize, sigma }

    public var kind: Kind
    /// `shards`: shards per client (2 in the paper).
    public var shardsPerClient: Int?
    /// `dirichlet`: concentration.
    public var alpha: Double?
    /// `dirichlet`: redraw until every client has at least this many samples (default 10).
    public var minimumSize: Int?
    /// `lognormal`: standard deviation of the log sizes.
    public var sigma: Double?

    public init(kind: Kind, shardsPerClient: Int? = nil, alpha: Double? = nil, minimumSize: Int? = nil, sigma: Double? = nil) {
        self.kind = kind; self.shardsPerClient = shardsPerClient; self.alpha = alpha; self.minimumSize = minimumSize; self.sigma = sigma
    }

    public static let iid = PartitionSpec(kind: .iid)

    public var description: String {
        switch kind {
        case .iid: return "IID"
        case .shards: return "pathological non-IID (\(shardsPerClient ?? 2) label-sorted shards a client)"
        case .dirichlet: return "Dirichlet(α = \(alpha ?? 0))"
        case .lognormal: return "log-normal sizes (σ = \(sigma ?? 0))"
        }
    }

    /// Checks that the scheme's own fields are set (and only those).
    public func validate() throws {
        let given: [(String, Bool)] = [("shardsPerClient", shardsPerClient != nil), ("alpha", alpha != nil),
                                       ("minimumSize", minimumSize != nil), ("sigma", sigma != nil)]
        let allowed: Set<String> = switch kind {
        case .iid: []
        case .shards: ["shardsPerClient"]
        case .dirichlet: ["alpha", "minimumSize"]
        case .lognormal: ["sigma"]
        }
        if let stray = given.first(where: { $0.1 && !allowed.contains($0.0) }) {
            throw DataError("partition '\(kind.rawValue)' takes no '\(stray.0)'")
        }
        if let s = shardsPerClient, s < 1 { throw DataError("partition shardsPerClient must be at least 1") }
        // Bounded so that the sampled weights stay finite (exp(σ·z) overflows past σ ≈ 80); beyond these the
        // partitions are all-IID or all-in-one-client anyway.
        if kind == .dirichlet {
            guard let alpha, alpha > 0, alpha <= PartitionSpec.largestAlpha else {
                throw DataError("partition 'dirichlet' needs 0 < alpha ≤ \(Int(PartitionSpec.largestAlpha))")
            }
        }
        if let m = minimumSize, m < 1 { throw DataError("partition minimumSize must be at least 1") }
        if kind == .lognormal {
            guard let sigma, sigma >= 0, sigma <= PartitionSpec.largestSigma else {
                throw DataError("partition 'lognormal' needs 0 ≤ sigma ≤ \(Int(PartitionSpec.largestSigma))")
            }
        }
    }

    static let largestAlpha = 1e6, largestSigma = 20.0

    /// The sample indices of each of `clients` clients.
    public func split(labels: [UInt8], classes: Int, clients: Int, seed: UInt64) throws -> [[Int]] {
        try validate()
        let n = labels.count
        guard clients >= 1 else { throw DataError("a partition needs at least one client") }
        guard n >= clients else { throw DataError("\(n) samples cannot be split among \(clients) clients") }
        var rng = SeededRandom(seed: seed, stream: 0x5041_5254, UInt64(kind.streamNumber))
        switch kind {
        case .iid:
            var order = Array(0..<n)
            rng.shuffle(&order)
            return cut(order, sizes: evenSizes(n, clients))
        case .shards:
            let perClient = shardsPerClient ?? 2
            let shardCount = clients * perClient
            guard n >= shardCount else { throw DataError("\(n) samples cannot make \(shardCount) shards") }
            // Stable sort by label (ties by index), as the paper's "sort the data by digit label".
            let sorted = (0..<n).sorted { labels[$0] != labels[$1] ? labels[$0] < labels[$1] : $0 < $1 }
            let shards = cut(sorted, sizes: evenSizes(n, shardCount))
            var dealt = Array(0..<shardCount)
            rng.shuffle(&dealt)
            return (0..<clients).map { c in dealt[(c * perClient)..<((c + 1) * perClient)].flatMap { shards[$0] } }
        case .dirichlet:
            return try dirichlet(labels: labels, classes: classes, clients: clients, rng: &rng)
        case .lognormal:
            let weights = (0..<clients).map { _ in exp((sigma ?? 0) * rng.nextGaussianDouble()) }
            var order = Array(0..<n)
            rng.shuffle(&order)
            return cut(order, sizes: proportionalSizes(n - clients, weights).map { $0 + 1 })
        }
    }

    private func dirichlet(labels: [UInt8], classes: Int, clients: Int, rng: inout SeededRandom) throws -> [[Int]] {
        let alpha = self.alpha!, minimum = minimumSize ?? 10
        guard labels.count >= clients * minimum else {
            throw DataError("\(labels.count) samples cannot give \(clients) clients \(minimum) each; lower minimumSize")
        }
        var byClass = [[Int]](repeating: [], count: classes)
        for (i, label) in labels.enumerated() { byClass[Int(label)].append(i) }
        for c in 0..<classes { rng.shuffle(&byClass[c]) }
        for _ in 0..<1000 {
            var parts = [[Int]](repeating: [], count: clients)
            for members in byClass where !members.isEmpty {
                let proportions = (0..<clients).map { _ in rng.nextGamma(shape: alpha) }
                for (client, piece) in cut(members, sizes: proportionalSizes(members.count, proportions)).enumerated() {
                    parts[client] += piece
                }
            }
            if parts.allSatisfy({ $0.count >= minimum }) { return parts }
        }
        throw DataError("Dirichlet(α = \(alpha)) left some client below \(minimum) samples in 1000 draws; raise alpha or lower minimumSize")
    }
}

extension PartitionSpec.Kind {
    /// The scheme's generator stream: its position among the kinds, the same in every process (unlike `hashValue`).
    var streamNumber: Int { PartitionSpec.Kind.allCases.firstIndex(of: self)! }
}

/// `n` split into `parts` sizes differing by at most one, larger ones first.
func evenSizes(_ n: Int, _ parts: Int) -> [Int] {
    (0..<parts).map { n / parts + ($0 < n % parts ? 1 : 0) }
}

/// `n` split in proportion to `weights` (largest remainders get the leftover units); sums to `n` exactly.
func proportionalSizes(_ n: Int, _ weights: [Double]) -> [Int] {
    let total = weights.reduce(0, +)
    let exact = weights.map { total > 0 ? Double(n) * $0 / total : Double(n) / Double(weights.count) }
    var sizes = exact.map { Int($0.rounded(.down)) }
    let leftover = n - sizes.reduce(0, +)
    let byRemainder = exact.indices.sorted { (exact[$0] - Double(sizes[$0]), $1) > (exact[$1] - Double(sizes[$1]), $0) }
    for i in byRemainder.prefix(leftover) { sizes[i] += 1 }
    return sizes
}

/// Consecutive pieces of `items` with the given sizes.
func cut(_ items: [Int], sizes: [Int]) -> [[Int]] {
    var start = 0
    return sizes.map { size in
        defer { start += size }
        return Array(items[start..<(start + size)])
    }
}

extension SeededRandom {
    mutating func nextUnitDouble() -> Double { Double(next() >> 11) * 0x1.0p-53 }

    /// Standard normal in double precision (Box–Muller).
    mutating func nextGaussianDouble() -> Double {
        let u1 = nextUnitDouble(), u2 = nextUnitDouble()
        return (-2.0 * log(1.0 - u1)).squareRoot() * cos(2.0 * Double.pi * u2)
    }

    /// Gamma(shape, 1) by Marsaglia and Tsang; shapes below 1 through Gamma(shape + 1) · U^(1/shape).
    mutating func nextGamma(shape: Double) -> Double {
        if shape < 1 {
            return nextGamma(shape: shape + 1) * pow(1 - nextUnitDouble(), 1 / shape)
        }
        let d = shape - 1.0 / 3.0, c = 1 / (9 * d).squareRoot()
        while true {
            var x: Double, v: Double
            repeat {
                x = nextGaussianDouble()
                v = 1 + c * x
            } while v <= 0
            v = v * v * v
            let u = nextUnitDouble()
            if log(max(u, .leastNonzeroMagnitude)) < 0.5 * x * x + d - d * v + d * log(v) { return d * v }
        }
    }
}
