import NNProtocol

/// One client's side of a round of secure aggregation, in the order of the protocol: it advertises two fresh
/// public keys and a commitment to a fresh self-mask seed; given the roster it splits its masking key and a fresh self-mask seed into t-of-n shares and seals
/// one of each for every other client; given the shares sealed for it (their senders are the clients that mask),
/// it masks its input, once, with the self mask and a pairwise mask per peer that cancels in the sum; asked to unmask, it
/// reveals, for each peer, the self-mask share if the peer's masked input arrived, else the masking-key share, and
/// never both for one peer.
final class MaskingClient {
    let client: UInt32
    let round: UInt64
    private let encryption = MaskingCrypto.KeyPair()
    private let masking = MaskingCrypto.KeyPair()
    private let selfMask = MaskingCrypto.randomSeed()
    private var roster: MaskingRoster?
    /// This client's shares of its own secrets, and then those it holds of the others', by owner: the clients that mask.
    private var own: (maskingKey: [UInt8], selfMask: [UInt8])?
    private var held: [UInt32: (maskingKey: [UInt8], selfMask: [UInt8])] = [:]
    /// Masked already this round: a second masking (against other peers) would let the two be compared.
    private var masked = false
    private var revealed = false

    init(client: UInt32, round: UInt64) { self.client = client; self.round = round }

    var keys: ClientKeys {
        ClientKeys(client: client, encryption: encryption.publicKey, masking: masking.publicKey, commitment: MaskingCrypto.commitment(selfMask))
    }

    /// Checks that a roster can be used: this client in it, ids increasing, threshold in 2…n.
    static func check(_ roster: MaskingRoster) throws {
        let ids = roster.keys.map(\.client)
        guard roster.keys.count <= WireCodec.maximumRoster, zip(ids, ids.dropFirst()).allSatisfy({ $0 < $1 }) else {
            throw ClusterError("secure aggregation: the roster of round \(roster.round + 1) is not at most \(WireCodec.maximumRoster) clients in increasing order")
        }
        guard roster.threshold >= 2, Int(roster.threshold) <= roster.keys.count, roster.fractionBits <= 30, roster.clip >= 0, roster.clip.isFinite else {
            throw ClusterError("secure aggregation: the roster of round \(roster.round + 1) asks for \(roster.threshold) of \(roster.keys.count) shares, \(roster.fractionBits) fraction bits and clip \(roster.clip)")
        }
    }

    /// This client's sealed shares for every other client of `roster`.
    func shares(for roster: MaskingRoster) throws -> [SealedShares] {
        try Self.check(roster)
        guard self.roster == nil else { throw ClusterError("secure aggregation: client \(client) got a second roster for round \(round + 1)") }
        guard roster.round == round, let me = roster.keys.first(where: { $0.client == client }), me == keys else {
            throw ClusterError("secure aggregation: client \(client) is not in the roster of round \(roster.round + 1) with its keys")
        }
        self.roster = roster
        let n = roster.keys.count, t = Int(roster.threshold)
        let keyShares = SecretSharing.split(masking.secretKey, count: n, threshold: t)
        let maskShares = SecretSharing.split(selfMask, count: n, threshold: t)
        let mine = roster.keys.firstIndex { $0.client == client }!
        own = (keyShares[mine], maskShares[mine])
        return try roster.keys.enumerated().compactMap { index, peer in
            guard peer.client != client else { return nil }
            let plaintext = Self.header(from: client, to: peer.client) + keyShares[index] + maskShares[index]
            guard let sealed = MaskingCrypto.seal(plaintext, to: peer.encryption, from: encryption.secretKey) else {
                throw ClusterError("secure aggregation: client \(peer.client)'s encryption key is not usable")
            }
            return SealedShares(from: client, to: peer.client, sealed: sealed)
        }
    }

    /// Opens the shares sealed for this client; their senders are its peers for masking. All or nothing: one share
    /// that does not open refuses the lot.
    func accept(_ shares: [SealedShares]) throws {
        guard let roster, let own else { throw ClusterError("secure aggregation: shares for client \(client) before its roster") }
        guard held.isEmpty else { throw ClusterError("secure aggregation: client \(client) got shares twice in round \(round + 1)") }
        var opened = [client: own]
        for share in shares {
            guard share.to == client, opened[share.from] == nil,
                  let sender = roster.keys.first(where: { $0.client == share.from }),
                  let plaintext = MaskingCrypto.open(share.sealed, from: sender.encryption, to: encryption.secretKey),
                  plaintext.count == 8 + 2 * RevealedShare.bytes, Array(plaintext[..<8]) == Self.header(from: share.from, to: client) else {
                throw ClusterError("secure aggregation: client \(client) got a share from \(share.from) that is not sealed for it by a client of the roster")
            }
            opened[share.from] = (Array(plaintext[8..<40]), Array(plaintext[40...]))
        }
        guard opened.count >= Int(roster.threshold) else {
            throw ClusterError("secure aggregation: client \(client) got shares from \(opened.count - 1) peers; the round needs \(roster.threshold) clients")
        }
        held = opened
    }

    /// `input` plus the self mask and the pairwise masks, modulo 2^32: + for peers with a larger id, − for smaller.
    func mask(_ input: [UInt32]) throws -> [UInt32] {
        guard let roster, !held.isEmpty else { throw ClusterError("secure aggregation: client \(client) masks before it has its peers' shares") }
        guard !masked else { throw ClusterError("secure aggregation: client \(client) masked already in round \(round + 1)") }
        masked = true
        var values = input
        MaskingCrypto.apply(seed: selfMask, sign: 1, to: &values)
        for peer in roster.keys where peer.client != client && held[peer.client] != nil {
            guard let seed = MaskingCrypto.pairSeed(secretKey: masking.secretKey, peerKey: peer.masking, round: round, client, peer.client) else {
                throw ClusterError("secure aggregation: client \(peer.client)'s masking key is not usable")
            }
            MaskingCrypto.apply(seed: seed, sign: peer.client > client ? 1 : -1, to: &values)
        }
        return values
    }

    /// The shares to reveal, given the clients whose masked inputs arrived: at least t of them, all peers of this one.
    func reveal(survivors: [UInt32]) throws -> [RevealedShare] {
        guard let roster, !held.isEmpty else { throw ClusterError("secure aggregation: client \(client) is asked to unmask before it had its peers' shares") }
        let alive = Set(survivors)
        guard !revealed else { throw ClusterError("secure aggregation: client \(client) already revealed its shares for round \(round + 1)") }
        guard alive.count == survivors.count, alive.count >= Int(roster.threshold),
              alive.allSatisfy({ held[$0] != nil }) else {
            throw ClusterError("secure aggregation: client \(client) refuses to unmask round \(round + 1): the \(survivors.count) survivors named are not \(roster.threshold) or more distinct clients that masked")
        }
        revealed = true
        return held.keys.sorted().map { owner in
            let pair = held[owner]!
            return alive.contains(owner)
                ? RevealedShare(holder: client, owner: owner, secret: .selfMask, share: pair.selfMask)
                : RevealedShare(holder: client, owner: owner, secret: .maskingKey, share: pair.maskingKey)
        }
    }

    private static func header(from: UInt32, to: UInt32) -> [UInt8] {
        withUnsafeBytes(of: from.littleEndian, Array.init) + withUnsafeBytes(of: to.littleEndian, Array.init)
    }
}
