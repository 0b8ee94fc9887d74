import Foundation
import NNCore
import NNProtocol

/// The clients one worker hosts in one round of secure aggregation (a simulation hosts them all), speaking
/// through the worker's messages: keys when the round's work comes, sealed shares once the roster is known,
/// masked updates once trained and given the others' shares, revealed shares when asked to unmask.
final class MaskingParty {
    let round: UInt64
    private let spec: SecureAggregationSpec
    private let seed: UInt64
    private let clients: [UInt32: MaskingClient]
    private var roster: MaskingRoster?

    init(round: UInt64, clients: [UInt32], spec: SecureAggregationSpec, seed: UInt64) {
        self.round = round; self.spec = spec; self.seed = seed
        self.clients = Dictionary(uniqueKeysWithValues: clients.map { ($0, MaskingClient(client: $0, round: round)) })
    }

    var keys: MaskingKeys { MaskingKeys(round: round, keys: clients.keys.sorted().map { clients[$0]!.keys }) }

    func shares(for roster: MaskingRoster) throws -> MaskingShares {
        guard roster.round == round else { throw ClusterError("secure aggregation: a roster for round \(roster.round + 1) in round \(round + 1)") }
        self.roster = roster
        let members = Set(roster.keys.map(\.client))
        return MaskingShares(round: round, shares: try clients.keys.sorted().filter(members.contains).flatMap { try clients[$0]!.shares(for: roster) })
    }

    /// The masked updates of the clients that got shares: each trained model becomes its encoded change plus
    /// masks. Clients mask in parallel, as they would on their own machines.
    func mask(_ updates: [ClientUpdate], global: [Float], shares: MaskingShares) throws -> [ClientUpdate] {
        guard let roster, shares.round == round else { throw ClusterError("secure aggregation: shares for round \(shares.round + 1) without its roster") }
        let encoding = FixedPoint(roster: roster, spec: spec)
        let byReceiver = Dictionary(grouping: shares.shares, by: \.to)
        // Each client's state is touched by the one thread that masks for it.
        nonisolated(unsafe) let work = updates.compactMap { u in
            byReceiver[u.client].flatMap { shares in clients[u.client].map { (update: u, client: $0, shares: shares) } }
        }
        var results = [Result<ClientUpdate, Error>?](repeating: nil, count: work.count)
        let seed = self.seed
        results.withUnsafeMutableBufferPointer { slots in
            nonisolated(unsafe) let slots = slots
            DispatchQueue.concurrentPerform(iterations: work.count) { j in
                slots[j] = Self.masked(work[j].update, by: work[j].client, shares: work[j].shares, global: global, roster: roster,
                                       encoding: encoding, seed: seed)
            }
        }
        return try results.map { try $0!.get() }
    }

    private static func masked(_ update: ClientUpdate, by client: MaskingClient, shares: [SealedShares], global: [Float], roster: MaskingRoster,
                               encoding: FixedPoint, seed: UInt64) -> Result<ClientUpdate, Error> {
        do {
            try client.accept(shares)
            let weight = roster.weightUnit == 0 ? 1 : Double(update.samples) / Double(roster.weightUnit)
            var random = SeededRandom(seed: seed, stream: 0x5345_4341, roster.round, UInt64(update.client))
            let input = update.parameters.withUnsafeBufferPointer {
                encoding.encode(trained: $0.baseAddress!, global: global, weight: weight, clip: roster.clip, random: &random)
            }
            var masked = update
            masked.parameters = []
            masked.masked = try client.mask(input)
            return .success(masked)
        } catch {
            return .failure(error)
        }
    }

    func reveal(_ unmask: Unmask) throws -> Reveal {
        guard unmask.round == round else { throw ClusterError("secure aggregation: unmasking round \(unmask.round + 1) in round \(round + 1)") }
        let alive = Set(unmask.survivors)
        return Reveal(round: round, shares: try clients.keys.sorted().filter(alive.contains).flatMap { try clients[$0]!.reveal(survivors: unmask.survivors) })
    }
}

extension FixedPoint {
    /// The encoding a roster sets: its fraction bits, and the clip norm as the range under privacy.
    init(roster: MaskingRoster, spec: SecureAggregationSpec) {
        self.init(fractionBits: Int(roster.fractionBits), range: roster.clip > 0 ? Double(roster.clip) : spec.range)
    }
}
