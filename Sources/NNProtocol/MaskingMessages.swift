/// The messages of secure aggregation (Bonawitz et al. 2017; `docs/protocol.md`, "Secure aggregation"). A worker
/// speaks for the clients it hosts in a round; the coordinator relays between clients and learns only the sum.

/// A client's two public X25519 keys for a round, one to receive its peers' encrypted shares and one to agree
/// pairwise mask seeds, and a commitment to its self-mask seed (its BLAKE2b-256 hash), so that a seed rebuilt
/// from wrong shares is caught.
public struct ClientKeys: Equatable, Sendable {
    public static let keyBytes = 32
    public var client: UInt32
    public var encryption: [UInt8]
    public var masking: [UInt8]
    public var commitment: [UInt8]
    public init(client: UInt32, encryption: [UInt8], masking: [UInt8], commitment: [UInt8]) {
        self.client = client; self.encryption = encryption; self.masking = masking; self.commitment = commitment
    }
}

/// Worker → coordinator: the keys of the worker's clients sampled in `round`.
public struct MaskingKeys: Equatable, Sendable {
    public var round: UInt64
    public var keys: [ClientKeys]
    public init(round: UInt64, keys: [ClientKeys]) { self.round = round; self.keys = keys }
}

/// Coordinator → worker: every client that sent keys (U1, by increasing id; a client's share number is its
/// position + 1), how many shares recover a secret, and how clients encode their changes as integers.
public struct MaskingRoster: Equatable, Sendable {
    public var round: UInt64
    public var threshold: UInt32
    /// Values are multiplied by 2^fractionBits before rounding.
    public var fractionBits: UInt8
    /// A client's change is weighted by its samples ÷ `weightUnit` (0: unweighted).
    public var weightUnit: UInt32
    /// With differential privacy, the L2 norm S each client clips its change to this round (0: no clipping).
    public var clip: Float
    public var keys: [ClientKeys]
    public init(round: UInt64, threshold: UInt32, fractionBits: UInt8, weightUnit: UInt32, clip: Float, keys: [ClientKeys]) {
        self.round = round; self.threshold = threshold; self.fractionBits = fractionBits; self.weightUnit = weightUnit
        self.clip = clip; self.keys = keys
    }
}

/// One client's shares of its two secrets, for one other client, sealed with crypto_box (the sender's
/// encryption key and the receiver's): nonce, then ciphertext with its MAC.
public struct SealedShares: Equatable, Sendable {
    /// 24-byte nonce + 16-byte MAC + the plaintext: sender, receiver (u32 each), two 32-byte shares.
    public static let bytes = 24 + 16 + 8 + 64
    public var from: UInt32
    public var to: UInt32
    public var sealed: [UInt8]
    public init(from: UInt32, to: UInt32, sealed: [UInt8]) { self.from = from; self.to = to; self.sealed = sealed }
}

/// Worker → coordinator: its clients' sealed shares for every other client of the roster. Coordinator →
/// worker: the sealed shares addressed to its clients; their senders are the clients that mask (U2).
public struct MaskingShares: Equatable, Sendable {
    public var round: UInt64
    public var shares: [SealedShares]
    public init(round: UInt64, shares: [SealedShares]) { self.round = round; self.shares = shares }
}

/// Coordinator → worker: the clients whose masked updates arrived (U3); the worker's clients reveal shares.
public struct Unmask: Equatable, Sendable {
    public var round: UInt64
    public var survivors: [UInt32]
    public init(round: UInt64, survivors: [UInt32]) { self.round = round; self.survivors = survivors }
}

/// A share of one client's secret, revealed by the client that held it.
public struct RevealedShare: Equatable, Sendable {
    public enum Secret: UInt8, Sendable {
        /// The seed of a surviving client's self mask.
        case selfMask = 0
        /// The masking key of a client that dropped after sending its shares.
        case maskingKey = 1
    }
    public static let bytes = 32
    public var holder: UInt32
    public var owner: UInt32
    public var secret: Secret
    public var share: [UInt8]
    public init(holder: UInt32, owner: UInt32, secret: Secret, share: [UInt8]) {
        self.holder = holder; self.owner = owner; self.secret = secret; self.share = share
    }
}

/// Worker → coordinator: the shares its clients reveal for the round's unmasking.
public struct Reveal: Equatable, Sendable {
    public var round: UInt64
    public var shares: [RevealedShare]
    public init(round: UInt64, shares: [RevealedShare]) { self.round = round; self.shares = shares }
}
