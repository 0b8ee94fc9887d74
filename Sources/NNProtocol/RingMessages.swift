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
    /// Where the next worker in the ring takes chunks.
    public var successor: String
    /// In a run secured with CURVE, the Z85 public keys of the next worker (the server key to push to it with)
    /// and of the previous one (the only key admitted to push to this worker); empty otherwise.
    public var successorKey: String
    public var predecessorKey: String
    /// The replica to start the generation from, a run state (`RunState.encoded`: model, optimizer, schedule
    /// position); empty on the generation's later steps, whose replica the worker has.
    public var sync: [UInt8]

    public init(generation: UInt64, position: UInt32, size: UInt32, firstStep: UInt64, totals: [UInt32], successor: String, successorKey: String = "",
                predecessorKey: String = "", sync: [UInt8] = []) {
        self.generation = generation; self.position = position; self.size = size; self.firstStep = firstStep; self.totals = totals
        self.successor = successor; self.successorKey = successorKey; self.predecessorKey = predecessorKey; self.sync = sync
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
