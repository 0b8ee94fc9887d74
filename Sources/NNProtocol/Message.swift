/// The messages between coordinator and workers. `docs/protocol.md` specifies their bytes; `WireCodec` encodes them.
public enum Message: Equatable, Sendable {
    /// Worker → coordinator, first message of a session.
    case hello(Hello)
    /// Coordinator → worker: registered; here is what to train and how.
    case welcome(Welcome)
    /// Coordinator → worker: not registered, and why. The worker exits.
    case refuse(Refuse)
    /// Coordinator → worker: compute the gradient of a slice of a step's global batch at these parameters.
    case task(GradientTask)
    /// Worker → coordinator: the mean gradient of the slice.
    case gradient(GradientResult)
    /// Either way: still alive. Sent when a side has had nothing else to say for one heartbeat interval.
    case heartbeat(Heartbeat)
    /// Either way: something went wrong with a message; the session goes on unless the code says otherwise.
    case error(ErrorReport)
    /// Coordinator → worker: training is over (or aborted); exit.
    case shutdown(Shutdown)
    /// Coordinator → worker (federated): train these hosted clients locally, starting from these weights.
    case train(TrainRequest)
    /// Worker → coordinator (federated): one client's weights after its local training.
    case update(ClientUpdate)
    /// Secure aggregation, in the order a round uses them (`MaskingMessages.swift`).
    case maskingKeys(MaskingKeys)
    case maskingRoster(MaskingRoster)
    case maskingShares(MaskingShares)
    case unmask(Unmask)
    case reveal(Reveal)
    /// Ring all-reduce (`RingMessages.swift`); ring tasks and ring gradients are `task` and `gradient` with a
    /// ring plan or generation.
    case ringChunk(RingChunk)
    case ringEndpoint(RingEndpoint)

    public var type: MessageType {
        switch self {
        case .hello: return .hello
        case .welcome: return .welcome
        case .refuse: return .refuse
        case .task(let t): return t.ring != nil ? .ringTask : t.compact ? .compactTask : .task
        case .gradient(let g): return g.generation != nil ? .ringGradient : g.compact ? .compactGradient : .gradient
        case .heartbeat: return .heartbeat
        case .error: return .error
        case .shutdown: return .shutdown
        case .train: return .train
        case .update(let u): return u.masked != nil ? .maskedUpdate : u.compressed != nil ? .compressedUpdate : .update
        case .maskingKeys: return .maskingKeys
        case .maskingRoster: return .maskingRoster
        case .maskingShares: return .maskingShares
        case .unmask: return .unmask
        case .reveal: return .reveal
        case .ringChunk: return .ringChunk
        case .ringEndpoint: return .ringEndpoint
        }
    }
}

public enum MessageType: UInt8, Sendable, CaseIterable {
    case hello = 1, welcome = 2, refuse = 3, task = 4, gradient = 5, heartbeat = 6, error = 7, shutdown = 8, train = 9, update = 10,
         compressedUpdate = 11, maskingKeys = 12, maskingRoster = 13, maskingShares = 14, unmask = 15, reveal = 16, maskedUpdate = 17,
         compactTask = 18, compactGradient = 19, ringTask = 20, ringGradient = 21, ringChunk = 22, ringEndpoint = 23
}

public struct Hello: Equatable, Sendable {
    /// Random per worker process; names the worker in heartbeats and logs.
    public var session: UInt64
    public var name: String
    /// SHA-256 of the worker's training and test data (`Dataset` fingerprint); must equal the coordinator's.
    public var dataFingerprint: [UInt8]
    public var inputWidth: UInt32
    public var classes: UInt32
    /// Federated clients the worker offers to host: ids `clientFirst ..< clientFirst + clientCount`.
    /// `clientFirst == Hello.anyClients` lets the coordinator choose which; `clientCount == 0` asks for an even share.
    public var clientFirst: UInt32
    public var clientCount: UInt32
    /// What the worker can compute beyond the features every worker must have.
    public var capabilities: Capabilities

    public static let anyClients = UInt32.max

    public init(session: UInt64, name: String, dataFingerprint: [UInt8], inputWidth: UInt32, classes: UInt32,
                clientFirst: UInt32 = Hello.anyClients, clientCount: UInt32 = 0, capabilities: Capabilities = .all) {
        self.session = session; self.name = name; self.dataFingerprint = dataFingerprint
        self.inputWidth = inputWidth; self.classes = classes; self.clientFirst = clientFirst; self.clientCount = clientCount
        self.capabilities = capabilities
    }
}

/// Optional model features a worker offers (`docs/protocol.md`, "What a worker computes"). Dense layers, the
/// three activations and the three losses are required of every worker; these are not, because they need this
/// project's random generator (dropout masks, adversarial noise) or more layer code than a small worker has.
/// A coordinator refuses a worker that lacks a feature the run needs.
public struct Capabilities: OptionSet, Equatable, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let dropout = Capabilities(rawValue: 1 << 0)
    public static let batchNorm = Capabilities(rawValue: 1 << 1)
    public static let residualBlocks = Capabilities(rawValue: 1 << 2)
    public static let adversarialClients = Capabilities(rawValue: 1 << 3)
    public static let secureAggregation = Capabilities(rawValue: 1 << 4)
    public static let compactVectors = Capabilities(rawValue: 1 << 5)
    public static let ring = Capabilities(rawValue: 1 << 6)
    public static let hostAggregation = Capabilities(rawValue: 1 << 7)
    public static let all: Capabilities = [.dropout, .batchNorm, .residualBlocks, .adversarialClients, .secureAggregation, .compactVectors, .ring,
                                           .hostAggregation]

    /// Names of the features in `self`, for messages.
    public var names: [String] {
        [(Capabilities.dropout, "dropout"), (.batchNorm, "batch norm"), (.residualBlocks, "residual blocks"),
         (.adversarialClients, "adversarial clients"), (.secureAggregation, "secure aggregation"),
         (.compactVectors, "bfloat16 vectors"), (.ring, "the ring topology"), (.hostAggregation, "host aggregation")].filter { contains($0.0) }.map(\.1)
    }
}

public struct Welcome: Equatable, Sendable {
    public var workerIndex: UInt32
    /// The run's configuration as JSON (`RunConfiguration` in NNCluster): model spec, seed, batch sizes.
    public var configuration: String
    /// The federated clients this worker hosts (count 0 outside federated runs).
    public var clientFirst: UInt32
    public var clientCount: UInt32

    public init(workerIndex: UInt32, configuration: String, clientFirst: UInt32 = 0, clientCount: UInt32 = 0) {
        self.workerIndex = workerIndex; self.configuration = configuration
        self.clientFirst = clientFirst; self.clientCount = clientCount
    }
}

public struct Refuse: Equatable, Sendable {
    public var reason: String
    public init(reason: String) { self.reason = reason }
}

public struct GradientTask: Equatable, Sendable {
    /// Global step number, from 0; in a ring, the round (whose first step the plan gives).
    public var step: UInt64
    /// The slice's first position in the epoch's sample order; names the slice in the answer.
    public var start: UInt32
    /// Position of the slice's first row within the step's global batch (for dropout masks).
    public var firstRow: UInt32
    /// The training samples of the slice, in row order.
    public var samples: [UInt32]
    public var parameters: [Float]
    /// Batch-norm running statistics (empty without batch norm).
    public var state: [Float]
    /// The parameters travel as bfloat16, and the gradient is to come back so.
    public var compact: Bool
    /// Set in a ring: the worker computes at its replica (parameters and state are empty) and sums with the ring.
    public var ring: RingPlan?

    public init(step: UInt64, start: UInt32, firstRow: UInt32, samples: [UInt32], parameters: [Float], state: [Float], compact: Bool = false,
                ring: RingPlan? = nil) {
        self.step = step; self.start = start; self.firstRow = firstRow; self.samples = samples
        self.parameters = parameters; self.state = state; self.compact = compact; self.ring = ring
    }
}

public struct GradientResult: Equatable, Sendable {
    public var step: UInt64
    public var start: UInt32
    public var count: UInt32
    /// Correctly classified samples of the slice, and the sum of their losses, for the coordinator's metrics.
    public var correct: UInt32
    public var lossSum: Double
    /// Time the worker spent computing, so the coordinator can tell compute from communication.
    public var computeNanoseconds: UInt64
    /// Gradient of the slice's mean loss.
    public var gradient: [Float]
    /// Running statistics after the slice's forward pass (empty without batch norm).
    public var state: [Float]
    /// The gradient travels as bfloat16.
    public var compact: Bool
    /// Set in a ring: the ring generation. The counts then cover every step of the task, `gradient` and `state`
    /// are empty, and the member at position 0 sends its replica after the task's steps in `replica`.
    public var generation: UInt64?
    /// A ring member's replica (a run state, `RunState.encoded`: model, optimizer, schedule position), or empty.
    public var replica: [UInt8]

    public init(step: UInt64, start: UInt32, count: UInt32, correct: UInt32, lossSum: Double, computeNanoseconds: UInt64,
                gradient: [Float], state: [Float], compact: Bool = false, generation: UInt64? = nil, replica: [UInt8] = []) {
        self.step = step; self.start = start; self.count = count; self.correct = correct; self.lossSum = lossSum
        self.computeNanoseconds = computeNanoseconds
        self.gradient = gradient; self.state = state; self.compact = compact; self.generation = generation
        self.replica = replica
    }
}

public struct TrainRequest: Equatable, Sendable {
    /// Federated round, from 0.
    public var round: UInt64
    /// Local SGD rate for this round.
    public var learningRate: Float
    /// E: local epochs.
    public var localEpochs: UInt32
    /// B: local batch size; 0 is the whole partition in one batch.
    public var localBatch: UInt32
    /// μ of FedProx: each local step adds μ(w − w_global) to the gradient; 0 for plain local SGD.
    public var proximalMu: Float
    /// The sampled clients of this worker, in increasing id order.
    public var clients: [ClientWork]
    /// The global model.
    public var parameters: [Float]
    public var state: [Float]

    public init(round: UInt64, learningRate: Float, localEpochs: UInt32, localBatch: UInt32, proximalMu: Float, clients: [ClientWork],
                parameters: [Float], state: [Float]) {
        self.round = round; self.learningRate = learningRate; self.localEpochs = localEpochs; self.localBatch = localBatch
        self.proximalMu = proximalMu; self.clients = clients; self.parameters = parameters; self.state = state
    }
}

/// One client of a train request: its id and the order in which each local epoch visits its samples.
public struct ClientWork: Equatable, Sendable {
    public var client: UInt32
    /// `localEpochs` permutations of the client's partition (training-set indices), one after the other.
    public var order: [UInt32]

    public init(client: UInt32, order: [UInt32]) { self.client = client; self.order = order }

    /// Samples in the client's partition, given the request's epochs.
    public func partitionSize(localEpochs: UInt32) -> Int { localEpochs == 0 ? 0 : order.count / Int(localEpochs) }
}

public struct ClientUpdate: Equatable, Sendable {
    public var round: UInt64
    public var client: UInt32
    /// The client's partition size, the weight of its update in the average.
    public var samples: UInt32
    /// Correct predictions and summed loss over the client's last local epoch, for the coordinator's metrics.
    public var correct: UInt32
    public var lossSum: Double
    public var computeNanoseconds: UInt64
    /// The client's model after local training; empty when the update is `compressed`.
    public var parameters: [Float]
    public var state: [Float]
    /// Instead of `parameters`: the client's model minus the global model it started from, compressed.
    public var compressed: DeltaEncoding?
    /// Instead of `parameters`, with secure aggregation: the client's change as integers plus its masks, modulo 2^32.
    public var masked: [UInt32]?

    public init(round: UInt64, client: UInt32, samples: UInt32, correct: UInt32, lossSum: Double, computeNanoseconds: UInt64,
                parameters: [Float], state: [Float], compressed: DeltaEncoding? = nil, masked: [UInt32]? = nil) {
        self.round = round; self.client = client; self.samples = samples; self.correct = correct; self.lossSum = lossSum
        self.computeNanoseconds = computeNanoseconds; self.parameters = parameters; self.state = state; self.compressed = compressed
        self.masked = masked
    }
}

/// A model difference in fewer bytes than its float32 values (`docs/protocol.md`, "Compressed updates").
public enum DeltaEncoding: Equatable, Sendable {
    /// Segments of the vector in order (one per parameter tensor), each value = scale × an int8 in −127…127.
    case int8(scales: [Float], lengths: [UInt32], values: [Int8])
    /// The values at `indices` (strictly increasing, below `count`); every other one is 0.
    case sparse(count: UInt32, indices: [UInt32], values: [Float])

    /// The values it stands for.
    public var decoded: [Float] {
        switch self {
        case let .int8(scales, lengths, values):
            var out = [Float](repeating: 0, count: values.count)
            var offset = 0
            for (scale, length) in zip(scales, lengths) {
                for i in offset..<(offset + Int(length)) { out[i] = scale * Float(values[i]) }
                offset += Int(length)
            }
            return out
        case let .sparse(count, indices, values):
            var out = [Float](repeating: 0, count: Int(count))
            for (i, v) in zip(indices, values) { out[Int(i)] = v }
            return out
        }
    }

    public var count: Int {
        switch self {
        case .int8(_, _, let values): values.count
        case .sparse(let count, _, _): Int(count)
        }
    }
}

public struct Heartbeat: Equatable, Sendable {
    public var session: UInt64
    public init(session: UInt64) { self.session = session }
}

public struct ErrorReport: Equatable, Sendable {
    public enum Code: UInt16, Sendable {
        /// The sender is not registered (or no longer is); a worker answers it with a new hello.
        case notRegistered = 1
        /// The message could not be decoded or did not fit the session.
        case badMessage = 2
        /// The sender failed; the session ends.
        case fatal = 3
        /// The worker leaves on purpose (it was told to stop, e.g. by SIGTERM): a clean departure, not a failure.
        case leaving = 4
    }
    public var code: Code
    public var text: String
    public init(code: Code, text: String) { self.code = code; self.text = text }
}

public struct Shutdown: Equatable, Sendable {
    public var reason: String
    public init(reason: String) { self.reason = reason }
}
