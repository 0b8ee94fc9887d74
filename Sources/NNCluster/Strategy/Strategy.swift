import NNCore
import NNProtocol

/// How a run trains: which work each round hands out, and how results become the next global model (Flower's
/// `configure_fit` and `aggregate_fit`). Synchronous SGD and the FedAvg family are peers behind it. The
/// coordinator (or the simulation) does the bookkeeping: registration, sending, collecting, deadlines,
/// failures; a strategy never touches a transport and keeps nothing between calls but the global model and
/// its optimizer state (which, as `Resumable`, it saves for a resumed run): a round's results come in as arguments.
public protocol Strategy: Resumable {
    associatedtype Work: Instruction
    associatedtype Result: WorkResult

    /// The global model, for evaluation and checkpoints.
    var network: Network { get }
    var rounds: Int { get }
    /// What joining workers are told, beyond the model.
    var job: Job { get }
    /// Federated clients the run has (0 when there are none); the coordinator gives each worker a range to host.
    var clientCount: Int { get }
    /// nil: every result is needed and a lost worker's work goes to the others. Set: a round ends at this
    /// deadline at the latest, missing results are left out, and with fewer than `minimumResults` it is skipped.
    var deadline: Duration? { get }
    var minimumResults: Int { get }

    /// The round's work for `participants` (in registration order; never empty).
    func configure(round: Int, participants: [Participant]) -> [Assignment<Work>]
    /// The work of `round` when it can be sent before the round before it is aggregated (it does not depend on
    /// the model, as a ring's samples do not), so that workers need not wait for the aggregation; nil otherwise.
    func configureAhead(round: Int, participants: [Participant]) -> [Assignment<Work>]?
    /// Work whose results (`keys` of `lost`) will not come, for the remaining `participants`; empty if it is
    /// not to be redone.
    func reassign(_ lost: Assignment<Work>, keys: [Int], round: Int, participants: [Participant]) -> [Assignment<Work>]
    /// The keys of `assignment` that `result` answers: its own, or all of them for a result that stands for
    /// several (a host's aggregate of its clients).
    func keys(answeredBy result: Result, of assignment: Assignment<Work>) -> [Int]
    /// Throws when `result` cannot be used for `assignment` (wrong counts or shape, non-finite values).
    func check(_ result: Result, against assignment: Assignment<Work>) throws
    /// Combines a round's checked results, in key order, into the next global model; `failures` are the keys
    /// that gave none. Returns what the results add up to.
    func aggregate(round: Int, results: [Result], failures: [Int]) throws -> RoundResult

    /// True when a round's results depend on each other (a ring): a lost worker or an unusable result then has
    /// the whole round configured again, and no work is given to a second worker on speculation.
    var restartsRoundOnLoss: Bool { get }
    /// The steps `round` holds: several for a ring's round, 1 otherwise.
    func stepCount(ofRound round: Int) -> Int
    /// False for a result that belongs to work configured earlier in the round and since replaced; it is dropped.
    func isCurrent(_ result: Result) -> Bool

    /// With secure aggregation: the coordinator's side of `round`, whose work went to `clients`; nil without.
    func maskingServer(round: Int, clients: [Int]) -> MaskingServer?
    /// Combines masked results given `sum`, the unmasked sum of their inputs, which `server` put together.
    func aggregate(round: Int, results: [Result], failures: [Int], sum: [UInt32], from server: MaskingServer) throws -> RoundResult
}

extension Strategy {
    public var restartsRoundOnLoss: Bool { false }
    public func stepCount(ofRound round: Int) -> Int { 1 }
    public func keys(answeredBy result: Result, of assignment: Assignment<Work>) -> [Int] { [result.key] }
    public func configureAhead(round: Int, participants: [Participant]) -> [Assignment<Work>]? { nil }
    public func isCurrent(_ result: Result) -> Bool { true }
    public func maskingServer(round: Int, clients: [Int]) -> MaskingServer? { nil }
    public func aggregate(round: Int, results: [Result], failures: [Int], sum: [UInt32], from server: MaskingServer) throws -> RoundResult {
        throw ClusterError("this strategy does not aggregate masked results")
    }
}
