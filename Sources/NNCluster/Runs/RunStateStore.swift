import Foundation
import NNCore
import NNData

/// Where a run keeps its state, how often it writes it, and whether it starts from the state already there.
public struct RunStateSettings: Sendable {
    public var directory: String
    /// Write the state after every this many rounds: steps in synchronous SGD, rounds in a federated run,
    /// epochs in one process. Also at the end of every epoch, when the run is stopped, and at its end.
    public var every: Int
    /// Continue from the state in `directory` instead of starting afresh.
    public var resume: Bool

    public init(directory: String, every: Int, resume: Bool) {
        self.directory = directory; self.every = every; self.resume = resume
    }
}

/// Writes and reads one run's state: the strategy's model and optimizer, the rounds done, the reports so far,
/// and what the run must agree on to be continued (its settings and its data), which a resume checks first.
struct RunStateStore {
    let settings: RunStateSettings
    /// The settings a resumed run must share, each a JSON value by name, with the data's fingerprint.
    let identity: [String: String]

    /// `settings`: encoded to a JSON object whose top-level fields are compared one by one; `model` too when
    /// the settings do not hold it.
    init<Settings: Encodable>(_ runState: RunStateSettings, settings: Settings, model: ModelSpec? = nil, data: DataIdentity) throws {
        self.settings = runState
        let object = try JSONSerialization.jsonObject(with: try JSONEncoder.sorted.encode(settings)) as? [String: Any] ?? [:]
        var identity = try object.mapValues { String(decoding: try JSONSerialization.data(withJSONObject: $0, options: [.sortedKeys, .fragmentsAllowed]), as: UTF8.self) }
        if let model { identity["model"] = model.description }
        identity["data"] = data.fingerprint.hexString
        self.identity = identity
    }

    /// Whether the state is due after `roundsDone` rounds.
    func due(roundsDone: Int) -> Bool { roundsDone % settings.every == 0 }
    /// For a run whose rounds take several steps: due when `steps`, just done, reach a multiple of `every`.
    func due(steps: Range<Int>) -> Bool { steps.lowerBound / settings.every != steps.upperBound / settings.every }

    /// Writes the state: `strategy`'s (or a trainer's), the rounds done and `history` (the reports so far, as JSON).
    func save<History: Encodable>(_ strategy: Resumable, roundsDone: Int, history: History) throws {
        var state = RunState()
        strategy.save(into: &state)
        state.values["rounds_done"] = String(roundsDone)
        try state.set("identity", json: identity)
        try state.set("history", json: history)
        try state.save(in: settings.directory)
    }

    /// The saved state when resuming (nil otherwise), after checking that it belongs to this run of `rounds`
    /// rounds; restores `strategy` from it and returns the rounds done and the history.
    func resume<History: Decodable>(_ strategy: Resumable, rounds: Int, history: History.Type) throws -> (roundsDone: Int, history: History)? {
        guard settings.resume else { return nil }
        let state = try RunState.load(from: settings.directory)
        let saved = try state.json("identity", as: [String: String].self)
        let differences = RunState.differences(saved: saved, current: identity)
        guard differences.isEmpty else {
            throw ClusterError("the run in \(settings.directory) cannot be resumed with these settings; they differ in: \(differences.joined(separator: "; "))")
        }
        let roundsDone = try state.integer("rounds_done")
        guard (0...rounds).contains(roundsDone) else { throw ClusterError("the run state in \(settings.directory) says \(roundsDone) rounds were done, of \(rounds)") }
        try strategy.restore(from: state)
        return (roundsDone, try state.json("history", as: History.self))
    }
}
