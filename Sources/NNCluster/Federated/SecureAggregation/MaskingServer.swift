import NNProtocol

/// The coordinator's side of a round of secure aggregation: it collects keys and fixes the roster (U1), relays
/// the sealed shares of the clients that sent theirs (U2), names the clients whose masked inputs arrived (U3),
/// and from the revealed shares rebuilds each survivor's self mask and each dropped client's masking key, which
/// is all it needs to take the masks out of the sum, and all it learns. It checks every message against the round.
public final class MaskingServer {
    let round: UInt64
    let spec: SecureAggregationSpec
    /// The round's encoding: changes weighted by samples ÷ `weightUnit`, or with privacy clipped to `clip`.
    private let weightUnit: Int
    private let clip: Float
    /// The clients given work whose worker is still there: the ones that may yet speak.
    private var waiting: Set<UInt32>
    private var keys: [UInt32: ClientKeys] = [:]
    private(set) var roster: MaskingRoster?
    private var sealed: [UInt32: [SealedShares]] = [:]
    /// U2 and U3.
    private(set) var maskers: [UInt32] = []
    private(set) var survivors: [UInt32] = []
    /// Revealed shares by owner, by holder's share number.
    private var revealed: [UInt32: [UInt8: [UInt8]]] = [:]

    init(round: UInt64, spec: SecureAggregationSpec, clients: [Int], weightUnit: Int, clip: Float) {
        self.round = round; self.spec = spec; self.weightUnit = weightUnit; self.clip = clip
        waiting = Set(clients.map { UInt32($0) })
    }

    /// Clients that will not speak again (their worker is gone).
    func lost(_ clients: [Int]) { waiting.subtract(clients.map { UInt32($0) }) }

    var keysComplete: Bool { waiting.isSubset(of: keys.keys) }

    func add(_ message: MaskingKeys, from hosted: Set<UInt32>) throws {
        guard roster == nil else { throw ClusterError("keys for round \(round + 1) after its roster was sent") }
        for k in message.keys {
            guard waiting.contains(k.client), hosted.contains(k.client), keys[k.client] == nil,
                  k.encryption.count == ClientKeys.keyBytes, k.masking.count == ClientKeys.keyBytes, k.commitment.count == ClientKeys.keyBytes else {
                throw ClusterError("keys for client \(k.client), which this worker does not host in round \(round + 1) or sent already")
            }
            keys[k.client] = k
        }
    }

    /// Fixes U1 and what its clients need to know: the threshold and the integer encoding.
    func makeRoster() throws -> MaskingRoster {
        let n = keys.count, t = spec.threshold(clients: n)
        guard n >= 2, n <= WireCodec.maximumRoster, t <= n else {
            throw ClusterError("round \(round + 1): \(n) clients sent keys; secure aggregation needs 2 to \(WireCodec.maximumRoster), and \(t) of them to unmask")
        }
        let bits = FixedPoint.fractionBits(clients: n, range: clip > 0 ? Double(clip) : spec.range)
        let made = MaskingRoster(round: round, threshold: UInt32(t), fractionBits: UInt8(bits), weightUnit: UInt32(clip > 0 ? 0 : weightUnit),
                                 clip: clip, keys: keys.keys.sorted().map { keys[$0]! })
        roster = made
        return made
    }

    var sharesComplete: Bool { roster.map { Set($0.keys.map(\.client)).intersection(waiting).isSubset(of: sealed.keys) } ?? false }

    func add(_ message: MaskingShares, from hosted: Set<UInt32>) throws {
        guard let roster else { throw ClusterError("shares for round \(round + 1) before its roster") }
        guard maskers.isEmpty else { throw ClusterError("shares for round \(round + 1) after they were relayed") }
        let members = Set(roster.keys.map(\.client))
        for (sender, shares) in Dictionary(grouping: message.shares, by: \.from) {
            let receivers = shares.map(\.to)
            guard hosted.contains(sender), members.contains(sender), sealed[sender] == nil,
                  Set(receivers) == members.subtracting([sender]), receivers.count == members.count - 1,
                  shares.allSatisfy({ $0.sealed.count == SealedShares.bytes }) else {
                throw ClusterError("shares from client \(sender) are not one sealed share for each other client of round \(round + 1)'s roster, from a client this worker hosts")
            }
            sealed[sender] = shares
        }
    }

    /// Fixes U2 (the clients whose shares came) and returns, for each, the shares sealed for it by the others of U2.
    func relay() throws -> [UInt32: [SealedShares]] {
        guard let roster else { throw ClusterError("round \(round + 1) has no roster") }
        maskers = sealed.keys.sorted()
        guard maskers.count >= Int(roster.threshold) else {
            throw ClusterError("round \(round + 1): \(maskers.count) clients sent their shares, fewer than the \(roster.threshold) needed to unmask")
        }
        let byReceiver = Dictionary(grouping: maskers.flatMap { sealed[$0]! }, by: \.to)
        return Dictionary(uniqueKeysWithValues: maskers.map { ($0, byReceiver[$0] ?? []) })
    }

    /// Fixes U3, the clients whose masked inputs arrived.
    func unmask(survivors arrived: [UInt32]) throws -> Unmask {
        guard let roster else { throw ClusterError("round \(round + 1) has no roster") }
        survivors = Set(arrived).intersection(maskers).sorted()
        guard survivors.count >= Int(roster.threshold) else {
            throw ClusterError("round \(round + 1): \(survivors.count) masked updates arrived, fewer than the \(roster.threshold) needed to unmask; \(maskers.count - survivors.count) of the \(maskers.count) clients that masked dropped")
        }
        return Unmask(round: round, survivors: survivors)
    }

    func add(_ message: Reveal, from hosted: Set<UInt32>) throws {
        guard let roster, !survivors.isEmpty else { throw ClusterError("shares revealed for round \(round + 1) before it was unmasked") }
        let alive = Set(survivors), masked = Set(maskers)
        for share in message.shares {
            guard hosted.contains(share.holder), alive.contains(share.holder), masked.contains(share.owner),
                  share.secret == (alive.contains(share.owner) ? .selfMask : .maskingKey),
                  let index = roster.keys.firstIndex(where: { $0.client == share.holder }),
                  revealed[share.owner]?[UInt8(index + 1)] == nil else {
                throw ClusterError("a revealed share of client \(share.owner)'s \(share.secret) from client \(share.holder) does not fit round \(round + 1)")
            }
            revealed[share.owner, default: [:]][UInt8(index + 1)] = share.share
        }
    }

    /// Every secret has the threshold of shares.
    var revealComplete: Bool {
        guard let roster else { return false }
        return maskers.allSatisfy { (revealed[$0]?.count ?? 0) >= Int(roster.threshold) }
    }

    /// The sum of the survivors' inputs: their masked inputs, less their self masks and the pairwise masks they
    /// share with clients that dropped after sending shares.
    func sum(_ masked: [UInt32: [UInt32]]) throws -> [UInt32] {
        guard let roster, revealComplete, let length = masked.first?.value.count, Set(masked.keys) == Set(survivors),
              masked.values.allSatisfy({ $0.count == length }) else {
            throw ClusterError("round \(round + 1) cannot be unmasked: shares or masked inputs are missing")
        }
        func secret(of owner: UInt32) -> [UInt8] {
            let shares = revealed[owner]!.sorted { $0.key < $1.key }.prefix(Int(roster.threshold))
            return SecretSharing.combine(shares.map { (number: $0.key, share: $0.value) })
        }
        let key = Dictionary(uniqueKeysWithValues: roster.keys.map { ($0.client, $0) })
        var total = [UInt32](repeating: 0, count: length)
        for u in survivors {
            for (i, v) in masked[u]!.enumerated() { total[i] &+= v }
            let seed = secret(of: u)
            guard MaskingCrypto.commitment(seed) == key[u]!.commitment else {
                throw ClusterError("round \(round + 1): the shares revealed for client \(u)'s self mask do not give the seed it committed to (a client revealed a wrong share)")
            }
            MaskingCrypto.apply(seed: seed, sign: -1, to: &total)
        }
        for v in Set(maskers).subtracting(survivors).sorted() {
            guard let pair = MaskingCrypto.KeyPair(secretKey: secret(of: v), publicKey: key[v]!.masking) else {
                throw ClusterError("round \(round + 1): the shares revealed for client \(v), which dropped, do not give its masking key")
            }
            for u in survivors {
                guard let seed = MaskingCrypto.pairSeed(secretKey: pair.secretKey, peerKey: key[u]!.masking, round: round, u, v) else {
                    throw ClusterError("round \(round + 1): client \(u)'s masking key is not usable")
                }
                // u added this mask with + when v > u: take it out with the opposite sign.
                MaskingCrypto.apply(seed: seed, sign: v > u ? -1 : 1, to: &total)
            }
        }
        return total
    }
}
