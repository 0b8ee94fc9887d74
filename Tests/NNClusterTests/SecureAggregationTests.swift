import Foundation
@testable import NNCluster
import NNCore
import NNData
import NNProtocol
import Testing

/// Secure aggregation: the secret sharing, the exact sum with and without dropouts, what one masked input tells,
/// the clients' refusals, and the runs (simulation, workers, privacy) built on it.
@Suite(.serialized) struct SecureAggregationTests {
    /// Random inputs of `length` values for clients 0..<n, roughly what encoded changes look like (small signed values).
    func inputs(_ n: Int, length: Int) -> [UInt32: [UInt32]] {
        var rng = SeededRandom(seed: 5, stream: 1)
        return Dictionary(uniqueKeysWithValues: (0..<n).map { c in
            (UInt32(c), (0..<length).map { _ in UInt32(bitPattern: Int32(rng.nextGaussian() * 1e6)) })
        })
    }

    /// One round of the protocol between a server and `n` clients in the order of the messages; `dropAfterMasking`
    /// send their shares and mask but their masked inputs never arrive; `silent` survivors never reveal; `tamper`
    /// may change what a survivor reveals.
    func round(_ inputs: [UInt32: [UInt32]], threshold: Double = 0.7, dropAfterMasking: Set<UInt32> = [], silent: Set<UInt32> = [],
               tamper: (UInt32, inout Reveal) -> Void = { _, _ in })
        throws -> (sum: [UInt32], masked: [UInt32: [UInt32]], server: MaskingServer) {
        let ids = inputs.keys.sorted()
        let server = MaskingServer(round: 7, spec: SecureAggregationSpec(threshold: threshold), clients: ids.map { Int($0) }, weightUnit: 1, clip: 0)
        let clients = Dictionary(uniqueKeysWithValues: ids.map { ($0, MaskingClient(client: $0, round: 7)) })
        for id in ids { try server.add(MaskingKeys(round: 7, keys: [clients[id]!.keys]), from: [id]) }
        #expect(server.keysComplete)
        let roster = try server.makeRoster()
        for id in ids { try server.add(MaskingShares(round: 7, shares: try clients[id]!.shares(for: roster)), from: [id]) }
        let relayed = try server.relay()
        var masked: [UInt32: [UInt32]] = [:]
        for id in ids {
            try clients[id]!.accept(relayed[id]!)
            let y = try clients[id]!.mask(inputs[id]!)
            if !dropAfterMasking.contains(id) { masked[id] = y }
        }
        let unmask = try server.unmask(survivors: masked.keys.sorted())
        for id in unmask.survivors where !silent.contains(id) {
            var reveal = Reveal(round: 7, shares: try clients[id]!.reveal(survivors: unmask.survivors))
            tamper(id, &reveal)
            try server.add(reveal, from: [id])
        }
        return (try server.sum(masked), masked, server)
    }

    /// Positions where two sums differ (a count, so that a failure does not print thousands of values).
    func mismatches(_ a: [UInt32], _ b: [UInt32]) -> Int { a.count == b.count ? zip(a, b).count { $0 != $1 } : max(a.count, b.count) }

    func plainSum(_ inputs: [UInt32: [UInt32]], of clients: some Sequence<UInt32>) -> [UInt32] {
        var total = [UInt32](repeating: 0, count: inputs.first!.value.count)
        for c in clients { for (i, v) in inputs[c]!.enumerated() { total[i] &+= v } }
        return total
    }

    @Test func anyThresholdOfSharesGivesTheSecretBack() {
        let secret = MaskingCrypto.randomSeed()
        let shares = SecretSharing.split(secret, count: 10, threshold: 7)
        for start in 0..<4 {
            let chosen = (start..<(start + 7)).map { (number: UInt8($0 + 1), share: shares[$0]) }
            #expect(SecretSharing.combine(chosen) == secret)
        }
        let tooFew = (0..<6).map { (number: UInt8($0 + 1), share: shares[$0]) }
        #expect(SecretSharing.combine(tooFew) != secret)
    }

    /// The unmasked sum is the sum of the inputs modulo 2^32, bit for bit, while no masked input equals its input.
    @Test func theSumIsExact() throws {
        let x = inputs(10, length: 5000)
        let (sum, masked, server) = try round(x)
        #expect(mismatches(sum, plainSum(x, of: x.keys)) == 0)
        #expect(server.roster?.threshold == 7)
        for (c, y) in masked { #expect(mismatches(y, x[c]!) > 4900) }
    }

    /// Up to n − t clients may drop after masking: their pairwise masks come out of the sum through their
    /// masking keys, rebuilt from shares; survivors that do not reveal are fine while t shares come. One more drop,
    /// and the round is refused with the reason.
    @Test func dropsAfterMaskingUpToTheThreshold() throws {
        let x = inputs(10, length: 3000)
        let dropped: Set<UInt32> = [1, 4, 8]
        let (sum, _, server) = try round(x, dropAfterMasking: dropped)
        #expect(mismatches(sum, plainSum(x, of: Set(x.keys).subtracting(dropped))) == 0)
        #expect(server.maskers.count == 10 && server.survivors.count == 7)
        let quiet = try round(x, dropAfterMasking: [2], silent: [0, 5])
        #expect(mismatches(quiet.sum, plainSum(x, of: Set(x.keys).subtracting([2]))) == 0)
        #expect {
            _ = try round(x, dropAfterMasking: [0, 1, 2, 3])
        } throws: { "\($0)".contains("6 masked updates arrived, fewer than the 7 needed to unmask") }
        #expect {
            _ = try round(x, silent: [0, 1, 2, 3])
        } throws: { "\($0)".contains("cannot be unmasked") }
    }

    /// A wrong revealed share of a self mask is caught by the client's commitment: the round fails with the reason
    /// instead of giving a wrong sum.
    @Test func aWrongRevealedShareIsCaught() throws {
        // With threshold 1 every survivor's share is needed; client 4 lies about its share of client 0's seed.
        #expect {
            _ = try round(inputs(5, length: 100), threshold: 1) { id, reveal in if id == 4 { reveal.shares[0].share[0] ^= 0x55 } }
        } throws: { "\($0)".contains("do not give the seed it committed to") }
    }

    /// What the coordinator receives from a client is independent of the client's update: over a real encoded
    /// change of the 2NN's 199,210 parameters, the correlation between masked and true values is at noise level
    /// (|r| < 0.01), and the masked values are uniform over 32 bits.
    @Test func aMaskedInputTellsNothingOfItsInput() throws {
        let spec = try ModelSpec(widths: [784, 200, 200, 10])
        let global = Network(spec: spec, seed: 1).parameters.array
        var rng = SeededRandom(seed: 2, stream: 3)
        let trained = global.map { $0 + 0.01 * rng.nextGaussian() }
        var random = SeededRandom(seed: 1, stream: 4)
        let input = FixedPoint(fractionBits: FixedPoint.fractionBits(clients: 10, range: 1), range: 1)
            .encode(trained: trained, global: global, weight: 1, clip: 0, random: &random)
        var x = inputs(10, length: input.count)
        x[3] = input
        let (_, masked, _) = try round(x)
        let truth = input.map { Double(Int32(bitPattern: $0)) }
        let seen = masked[3]!.map { Double($0) }
        let r = correlation(truth, seen)
        #expect(abs(r) < 0.01, "correlation \(r)")
        let mean = seen.reduce(0, +) / Double(seen.count) / 0x1p32
        #expect(abs(mean - 0.5) < 0.005, "mean of the masked values / 2^32: \(mean)")
        // Also against the other clients' masked values: no client's input shows through in another's.
        #expect(abs(correlation(truth, masked[4]!.map { Double($0) })) < 0.01)
    }

    func correlation(_ a: [Double], _ b: [Double]) -> Double {
        let ma = a.reduce(0, +) / Double(a.count), mb = b.reduce(0, +) / Double(b.count)
        var sab = 0.0, saa = 0.0, sbb = 0.0
        for (x, y) in zip(a, b) { sab += (x - ma) * (y - mb); saa += (x - ma) * (x - ma); sbb += (y - mb) * (y - mb) }
        return sab / (saa * sbb).squareRoot()
    }

    /// A client reveals one secret per peer once per round, only for at least t survivors it masked with, and
    /// accepts only shares sealed for it by a member of the roster.
    @Test func clientsRefuseWhatWouldExposeThem() throws {
        let server = MaskingServer(round: 1, spec: SecureAggregationSpec(threshold: 0.6), clients: [0, 1, 2, 3], weightUnit: 1, clip: 0)
        let clients = (0..<4).map { MaskingClient(client: UInt32($0), round: 1) }
        for c in clients { try server.add(MaskingKeys(round: 1, keys: [c.keys]), from: [c.client]) }
        let roster = try server.makeRoster()
        #expect(roster.threshold == 3)
        var all: [SealedShares] = []
        for c in clients { all += try c.shares(for: roster) }
        let mine = all.filter { $0.to == 0 }
        var tampered = mine
        tampered[0].sealed[30] ^= 1
        #expect(throws: ClusterError.self) { try clients[0].accept(tampered) }
        var forged = mine
        forged[0].from = 3  // sealed by client 1, claimed as client 3's
        #expect(throws: ClusterError.self) { try clients[0].accept(forged) }
        try clients[0].accept(mine)
        #expect(throws: ClusterError.self) { try clients[0].accept(mine) }  // shares twice
        #expect(throws: ClusterError.self) { _ = try clients[0].shares(for: roster) }  // a second roster
        _ = try clients[0].mask([1, 2, 3])
        #expect(throws: ClusterError.self) { _ = try clients[0].mask([1, 2, 3]) }  // masking twice
        #expect(throws: ClusterError.self) { _ = try clients[0].reveal(survivors: [0, 1]) }  // fewer than t
        #expect(throws: ClusterError.self) { _ = try clients[0].reveal(survivors: [0, 1, 9]) }  // 9 did not mask
        let revealed = try clients[0].reveal(survivors: [0, 1, 2])
        #expect(revealed.first { $0.owner == 3 }?.secret == .maskingKey && revealed.first { $0.owner == 1 }?.secret == .selfMask)
        #expect(throws: ClusterError.self) { _ = try clients[0].reveal(survivors: [0, 1, 2, 3]) }  // asked again, to get 3's self mask too
    }

    /// Secure aggregation refuses what it cannot do, with the reason.
    @Test func experimentsItCannotServeAreRefused() throws {
        func refusal(_ change: (inout Experiment) -> Void) -> String {
            var e = try! smallExperiment()
            e.secureAggregation = SecureAggregationSpec()
            change(&e)
            do { try e.validate(); return "" } catch { return "\(error)" }
        }
        #expect(refusal { _ in } == "")
        #expect(refusal { $0.strategy = StrategySpec(kind: .fedmedian) }.contains("sees only their sum"))
        #expect(refusal { $0.strategy = StrategySpec(kind: .fedtrimmedavg) }.contains("sees only their sum"))
        #expect(refusal { $0.compression = CompressionSpec(kind: .int8) }.contains("choose one"))
        #expect(refusal { $0.fraction = 0.2 }.contains("at least 3 clients"))
        let threshold = refusal { $0.secureAggregation = SecureAggregationSpec(threshold: 0.5) }
        let range = refusal { $0.secureAggregation = SecureAggregationSpec(range: 0) }
        #expect(threshold.contains("threshold") && range.contains("range"))
        #expect(throws: ExperimentError.self) {
            try Experiment.decode(Data(#"{"name":"x","model":"784-10","partition":{"kind":"iid"},"clients":10,"fraction":0.5,"localEpochs":1,"localBatch":10,"learningRate":0.1,"rounds":1,"secureAggregation":{"treshold":0.7}}"#.utf8), source: "test")
        }
    }

    /// The experiment of the run tests: 10 clients, half of them a round, masked.
    func maskedExperiment(rounds: Int = 3) throws -> Experiment {
        var e = try smallExperiment(partition: PartitionSpec(kind: .iid), rounds: rounds)
        e.secureAggregation = SecureAggregationSpec()
        try e.validate()
        return e
    }

    /// The global model a masked round makes is FedAvg of the clients' quantised changes, exactly: the same sum
    /// as adding the encoded inputs without masks. And it is FedAvg of the unquantised models to within the
    /// fixed point's resolution.
    @Test func aMaskedRoundIsFedAvgOfTheQuantisedUpdates() throws {
        let data = try mnistSubset(2000).train
        let experiment = try maskedExperiment()
        let strategy = try FederatedAveraging(experiment: experiment, trainingLabels: data.labels, classes: 10)
        var plainExperiment = experiment
        plainExperiment.secureAggregation = nil
        let plain = try FederatedAveraging(experiment: plainExperiment, trainingLabels: data.labels, classes: 10)
        let host = try ClientHost(experiment: experiment, data: data, clients: 0..<10, threads: 2)
        let everyone = [Participant(peer: PeerID(Array("t".utf8)), clients: 0..<10)]
        let assignment = strategy.configure(round: 0, participants: everyone)[0]
        let updates = try host.train(assignment.work)
        let global = assignment.work.parameters

        let server = strategy.maskingServer(round: 0, clients: assignment.keys)!
        let party = MaskingParty(round: 0, clients: assignment.keys.map { UInt32($0) }, spec: experiment.secureAggregation!, seed: experiment.seed)
        try server.add(party.keys, from: Set(assignment.keys.map { UInt32($0) }))
        let roster = try server.makeRoster()
        try server.add(try party.shares(for: roster), from: Set(assignment.keys.map { UInt32($0) }))
        let relayed = try server.relay()
        let masked = try party.mask(updates, global: global, shares: MaskingShares(round: 0, shares: relayed.values.flatMap { $0 }))
        for u in masked { try strategy.check(u, against: assignment) }
        let unmask = try server.unmask(survivors: masked.map(\.client))
        try server.add(try party.reveal(unmask), from: Set(unmask.survivors))
        let sum = try server.sum(Dictionary(uniqueKeysWithValues: masked.map { ($0.client, $0.masked!) }))

        // The same inputs, encoded without masks, add up to the same integers.
        let encoding = FixedPoint(roster: roster, spec: experiment.secureAggregation!)
        var expected = [UInt32](repeating: 0, count: global.count + 2)
        for u in updates {
            var random = SeededRandom(seed: experiment.seed, stream: 0x5345_4341, 0, UInt64(u.client))
            let input = u.parameters.withUnsafeBufferPointer {
                encoding.encode(trained: $0.baseAddress!, global: global, weight: Double(u.samples) / Double(roster.weightUnit), clip: 0, random: &random)
            }
            for i in input.indices { expected[i] &+= input[i] }
        }
        #expect(mismatches(sum, expected) == 0)
        let result = try strategy.aggregate(round: 0, results: masked, failures: [], sum: sum, from: server)
        #expect(result.masking == MaskingTally(masked: 5, dropped: 0, clamped: 0))
        let (change, _, _) = encoding.decode(expected)
        let weight = updates.reduce(0.0) { $0 + Double($1.samples) / Double(roster.weightUnit) }
        #expect(strategy.network.parameters.array == zip(global, change).map { $0 + Float($1 / weight) }, "the model is not global + Σ/Σw")
        _ = try plain.aggregate(round: 0, results: updates, failures: [])
        let gap = zip(strategy.network.parameters.array, plain.network.parameters.array).map { abs($0 - $1) }.max()!
        #expect(gap < 4 / Float(encoding.scale) + 1e-6, "largest difference from unmasked FedAvg \(gap); resolution \(1 / encoding.scale)")
    }

    /// Workers over ZeroMQ give the simulation's model bit for bit: the masks differ run to run and cancel exactly.
    @Test func workersGiveTheSimulationsModel() throws {
        let data = try mnistSubset(2000).train
        let experiment = try maskedExperiment()
        let (simulated, simulatedReports) = try simulate(experiment, data: data)
        let (distributed, reports) = try federated(experiment, data: data, workers: 2, wire: .zeroMQ)
        #expect(simulated.parameters.array == distributed.parameters.array)
        #expect(reports.allSatisfy { $0.skipped == nil && $0.result.masking?.masked == 5 })
        #expect(simulatedReports.allSatisfy { $0.result.masking?.masked == 5 })
        #expect(reports.last?.rejectedSoFar == 0)
    }

    /// A worker that goes silent takes its clients out of the rounds that follow; the others' rounds still complete.
    @Test func aLostWorkersClientsAreLeftOut() throws {
        let data = try mnistSubset(2000).train
        var experiment = try maskedExperiment(rounds: 4)
        experiment.fraction = 1
        let (_, reports) = try federated(experiment, data: data, workers: 3, wire: .inProcess, deadline: 10, timeout: 1) { round, clients in
            if round == 0 { clients[2].silence() }
        }
        #expect(reports.count == 4)
        #expect(reports[0].result.masking?.masked == 10)
        for report in reports.dropFirst(2) {
            #expect(report.skipped == nil)
            #expect(report.result.masking?.masked == 8, "round \(report.round + 1): \(String(describing: report.result.masking))")
        }
    }

    /// A worker that cannot mask (the reference Python worker offers no capabilities) is refused at registration
    /// with the reason, instead of having every update rejected.
    @Test func aWorkerThatCannotMaskIsRefused() throws {
        let data = try mnistSubset(1000).train
        try expectRefused(by: try FederatedRun(experiment: try maskedExperiment(), train: data, test: nil, logger: quiet), data: data,
                          capabilities: Capabilities.all.subtracting(.secureAggregation),
                          reason: "the run needs secure aggregation, which this worker does not offer")
    }

    /// A worker that stays connected but falls silent before its clients send keys holds the round up to its
    /// deadline, and the round is skipped with the reason; once the worker is dropped, the rounds go on without it.
    @Test func aRoundWithoutEveryonesKeysIsSkippedAtTheDeadline() throws {
        let data = try mnistSubset(2000).train
        var experiment = try maskedExperiment(rounds: 8)
        experiment.fraction = 1
        let (_, reports) = try federated(experiment, data: data, workers: 2, wire: .inProcess, deadline: 0.3, timeout: 1) { round, clients in
            if round == 0 { clients[1].silence() }
        }
        #expect(reports.count == 8, "\(reports.map { $0.skipped ?? "ok" })")
        #expect(reports[0].skipped == nil && reports[0].result.masking?.masked == 10)
        #expect(reports[1].skipped?.contains("not every sampled client still there sent its keys in time") == true, "\(String(describing: reports[1].skipped))")
        #expect(reports.last?.skipped == nil && reports.last?.result.masking?.masked == 5)
    }

    /// With differential privacy and no noise, the masked run clips as plain DP-FedAvg does and ends within the
    /// fixed point's resolution of it; clients clip, and the coordinator counts the clipped ones from the sum.
    @Test func worksWithDifferentialPrivacy() throws {
        let data = try mnistSubset(2000).train
        var experiment = try maskedExperiment()
        experiment.privacy = PrivacySpec(clip: 0.5, noiseMultiplier: 0, sampling: .fixed)
        try experiment.validate()
        var plain = experiment
        plain.secureAggregation = nil
        let (masked, maskedReports) = try simulate(experiment, data: data)
        let (clear, clearReports) = try simulate(plain, data: data)
        #expect(zip(maskedReports, clearReports).allSatisfy { $0.result.privacy?.clipped == $1.result.privacy?.clipped })
        #expect(clearReports.contains { ($0.result.privacy?.clipped ?? 0) > 0 })
        #expect(relativeDifference(masked, clear) < 1e-5, "\(relativeDifference(masked, clear))")
        // Adaptive clipping: S moves by the clipped count, which travels in the masked sum, through the same values.
        experiment.privacy?.adaptiveClip = PrivacySpec.AdaptiveClip()
        experiment.privacy?.noiseSeed = 3
        plain.privacy = experiment.privacy
        let maskedClips = try simulate(experiment, data: data).1.compactMap { $0.result.privacy?.clip }
        let clearClips = try simulate(plain, data: data).1.compactMap { $0.result.privacy?.clip }
        #expect(maskedClips == clearClips && maskedClips.count == 3 && Set(maskedClips).count == 3, "\(maskedClips) against \(clearClips)")
        var noisy = experiment
        noisy.privacy?.noiseMultiplier = 1
        noisy.privacy?.noiseSeed = 4
        let (first, _) = try simulate(noisy, data: data)
        noisy.privacy?.noiseSeed = 5
        let (second, _) = try simulate(noisy, data: data)
        #expect(first.parameters.array != second.parameters.array)
    }
}
