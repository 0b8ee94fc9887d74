import Foundation
import NNData
import Testing

@Suite struct PartitionTests {
    static let labels: [UInt8] = {
        let directory = DatasetKind.mnist.defaultDirectory()
        return (try? DatasetKind.mnist.load(from: directory).train.labels) ?? []
    }()

    static let schemes: [PartitionSpec] = [
        .iid, PartitionSpec(kind: .shards, shardsPerClient: 2), PartitionSpec(kind: .dirichlet, alpha: 0.5),
        PartitionSpec(kind: .lognormal, sigma: 1),
    ]

    func mnistLabels() throws -> [UInt8] {
        _ = try mnistDirectory()
        return Self.labels
    }

    func histogram(_ part: [Int], _ labels: [UInt8]) -> [Int] {
        var h = [Int](repeating: 0, count: 10)
        for i in part { h[Int(labels[i])] += 1 }
        return h
    }

    @Test(arguments: schemes)
    func everySampleInExactlyOneClientAndSeedFixesTheSplit(_ scheme: PartitionSpec) throws {
        let labels = try mnistLabels()
        let parts = try scheme.split(labels: labels, classes: 10, clients: 100, seed: 7)
        #expect(parts.count == 100)
        var seen = [Int](repeating: 0, count: labels.count)
        for part in parts { for i in part { seen[i] += 1 } }
        #expect(seen.allSatisfy { $0 == 1 }, "\(scheme): some sample is in no client or in several")
        #expect(parts.allSatisfy { !$0.isEmpty })
        #expect(try scheme.split(labels: labels, classes: 10, clients: 100, seed: 7) == parts)
        #expect(try scheme.split(labels: labels, classes: 10, clients: 100, seed: 8) != parts)
    }

    @Test func iidClientsAreBalancedInSizeAndLabels() throws {
        let labels = try mnistLabels()
        let parts = try PartitionSpec.iid.split(labels: labels, classes: 10, clients: 100, seed: 1)
        #expect(parts.allSatisfy { $0.count == 600 })
        // 600 draws from ~10% classes: a class count far outside 60 ± 30 would mean the shuffle is not a shuffle.
        for part in parts { #expect(histogram(part, labels).allSatisfy { (30...95).contains($0) }) }
    }

    /// The paper's split: label-sorted data cut into 200 shards of 300, two shards a client.
    @Test func pathologicalShardsAreTwoRunsOf300SortedSamples() throws {
        let labels = try mnistLabels()
        let parts = try PartitionSpec(kind: .shards, shardsPerClient: 2).split(labels: labels, classes: 10, clients: 100, seed: 1)
        let sorted = (0..<labels.count).sorted { labels[$0] != labels[$1] ? labels[$0] < labels[$1] : $0 < $1 }
        var position = [Int](repeating: 0, count: labels.count)
        for (p, i) in sorted.enumerated() { position[i] = p }
        var atMostTwoLabels = 0
        for part in parts {
            #expect(part.count == 600)
            let shards = Set(part.map { position[$0] / 300 })
            #expect(shards.count == 2, "a client holds pieces of \(shards.count) shards")
            for shard in shards { #expect(part.filter { position[$0] / 300 == shard }.count == 300) }
            if histogram(part, labels).filter({ $0 > 0 }).count <= 2 { atMostTwoLabels += 1 }
        }
        // Shards that straddle a label boundary give a few clients a third or fourth label.
        #expect(atMostTwoLabels >= 80, "\(atMostTwoLabels) of 100 clients have at most two labels")
    }

    @Test func dirichletConcentrationControlsLabelSkew() throws {
        let labels = try mnistLabels()
        func dominantShare(_ alpha: Double) throws -> Double {
            let parts = try PartitionSpec(kind: .dirichlet, alpha: alpha).split(labels: labels, classes: 10, clients: 20, seed: 3)
            #expect(parts.allSatisfy { $0.count >= 10 })
            return parts.map { Double(histogram($0, labels).max()!) / Double($0.count) }.reduce(0, +) / Double(parts.count)
        }
        let skewed = try dominantShare(0.05), flat = try dominantShare(1000)
        #expect(skewed > 0.6, "α = 0.05: mean share of a client's most common label \(skewed)")
        #expect(flat < 0.15, "α = 1000: mean share of a client's most common label \(flat)")
    }

    @Test func lognormalSizesSpreadAsSigmaSays() throws {
        let labels = try mnistLabels()
        for sigma in [0.0, 1.0] {
            let parts = try PartitionSpec(kind: .lognormal, sigma: sigma).split(labels: labels, classes: 10, clients: 200, seed: 5)
            let logs = parts.map { log(Double($0.count)) }
            let mean = logs.reduce(0, +) / Double(logs.count)
            let sd = (logs.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(logs.count - 1)).squareRoot()
            #expect(abs(sd - sigma) < 0.15, "σ = \(sigma): standard deviation of log sizes \(sd)")
        }
    }

    @Test func badSpecificationsAreRejected() throws {
        let labels: [UInt8] = Array(repeating: 0, count: 50)
        expectDataError("alpha") { _ = try PartitionSpec(kind: .dirichlet).split(labels: labels, classes: 10, clients: 5, seed: 1) }
        expectDataError("takes no", "sigma") { _ = try PartitionSpec(kind: .iid, sigma: 1).split(labels: labels, classes: 10, clients: 5, seed: 1) }
        expectDataError("cannot be split") { _ = try PartitionSpec.iid.split(labels: labels, classes: 10, clients: 51, seed: 1) }
        // Weights that would overflow to infinity (and sizes to NaN) are refused, not trapped on.
        for sigma in [-1, 21, 3.3e76, .infinity, .nan] {
            expectDataError("0 ≤ sigma ≤ 20") { _ = try PartitionSpec(kind: .lognormal, sigma: sigma).split(labels: labels, classes: 10, clients: 5, seed: 1) }
        }
        for alpha in [0, 2e6, 1.7e308, .infinity, .nan] {
            expectDataError("0 < alpha ≤ 1000000") { _ = try PartitionSpec(kind: .dirichlet, alpha: alpha).split(labels: labels, classes: 10, clients: 5, seed: 1) }
        }
        #expect(try PartitionSpec(kind: .lognormal, sigma: 20).split(labels: labels, classes: 10, clients: 5, seed: 1).map(\.count).reduce(0, +) == 50)
        expectDataError("minimumSize") {
            _ = try PartitionSpec(kind: .dirichlet, alpha: 1, minimumSize: 20).split(labels: labels, classes: 10, clients: 5, seed: 1)
        }
    }
}
