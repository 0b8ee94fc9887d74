/// The ring topology of synchronous SGD: workers sum their gradients among themselves (a ring all-reduce) and
/// each applies the optimizer to its own replica of the model; the coordinator hands out the samples, keeps
/// membership, and keeps its own replica from the reduced chunks the workers send it. `docs/protocol.md`,
/// "Ring all-reduce", specifies the bytes.

/// A task's place in a ring (it then travels as a `ringTask`, without parameters).
public struct RingPlan: Equatable, Sendable {
    /// Names one ring: members, order and starting replica. A new one starts whenever membership changes or a
    /// step is redone; chunks and results of another generation are not mixed in.
    public var generation: UInt64
    public var position: UInt32
    public var size: UInt32
    /// The global step number of the task's first step.
    public var firstStep: UInt64
    /// The task's steps, each by its samples over the whole ring: a member's part of a step is its slice of
    /// them (`BatchSlices`), and it weighs its mean gradient by its share of them.
    public var totals: [UInt32]
    /// How the members sum: the ring's algorithm or, with a power-of-two number of members, halving-doubling.
    public var allReduce: AllReduce
    /// The members this one sends chunks to or takes chunks from (`RingAllReduce.peers`): where they take
    /// chunks, and their keys.
    public var peers: [RingPeer]
    /// The replica to start the generation from, a run state (`RunState.encoded`: model, optimizer, schedule
    /// position); empty on the generation's later steps, whose replica the worker has.
    public var sync: [UInt8]

    public init(generation: UInt64, position: UInt32, size: UInt32, firstStep: UInt64, totals: [UInt32], allReduce: AllReduce = .ring,
                peers: [RingPeer], sync: [UInt8] = []) {
        self.generation = generation; self.position = position; self.size = size; self.firstStep = firstStep; self.totals = totals
        self.allReduce = allReduce; self.peers = peers; self.sync = sync
    }
}

/// How a ring's members sum a vector among themselves. Both send each member's 2(n − 1)/n of the vector; they
/// differ in how many exchanges a sum takes, each of which waits on a peer.
public enum AllReduce: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// Patarasuk and Yuan's ring: 2(n − 1) exchanges of 1/n of the vector, each with the next member.
    case ring = 0
    /// Recursive halving, then recursive doubling (Rabenseifner): 2·log₂ n exchanges, with the members at distance
    /// n/2, n/4, …, 1 and back, of a half, a quarter, … of the vector. Only for n a power of two.
    case halvingDoubling = 1

    public var description: String { self == .ring ? "ring" : "halving-doubling" }
}

/// A member another one exchanges chunks with: its position, where it takes chunks, and in a run secured with
/// CURVE its Z85 public key (empty otherwise).
public struct RingPeer: Equatable, Sendable {
    public var position: UInt32
    public var endpoint: String
    public var key: String

    public init(position: UInt32, endpoint: String, key: String = "") {
        self.position = position; self.endpoint = endpoint; self.key = key
    }
}

/// Worker → worker: one chunk of a ring all-reduce, `phase` counting the sends of a step (reduce-scatter, then
/// all-gather).
public struct RingChunk: Equatable, Sendable {
    public var generation: UInt64
    public var step: UInt64
    public var phase: UInt32
    public var values: [Float]

    public init(generation: UInt64, step: UInt64, phase: UInt32, values: [Float]) {
        self.generation = generation; self.step = step; self.phase = phase; self.values = values
    }
}

/// Worker → coordinator, once welcomed into a ring run: where this worker takes chunks.
public struct RingEndpoint: Equatable, Sendable {
    public var endpoint: String
    public init(endpoint: String) { self.endpoint = endpoint }
}
