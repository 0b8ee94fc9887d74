import Dispatch
import Foundation
import Logging
import NNCore
import NNData

/// A grid of federated experiments run in simulation: every combination of the grid's values, each with every
/// seed, several at a time; the table of the FedAvg paper (rounds to the target per cell, median and range over
/// seeds, final accuracy, wall time) comes from the outcomes.
public struct Sweep: Sendable {
    /// An experiment key (a dotted path for nested ones, e.g. `strategy.mu`) and the values it takes.
    public struct Axis: Equatable, Sendable {
        public var key: String
        public var values: [String]

        /// Parses `key=v1,v2,…`; each value is JSON (a number, true/false, or a quoted string) or a bare word.
        public init(parsing text: String) throws {
            let parts = text.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty else { throw ExperimentError("--grid takes KEY=V1,V2,…, e.g. learningRate=0.05,0.1,0.2; got '\(text)'") }
            key = parts[0]
            values = parts[1].split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard !values.isEmpty, values.allSatisfy({ !$0.isEmpty }) else { throw ExperimentError("--grid \(key): an empty value in '\(parts[1])'") }
        }
    }

    /// One cell of the grid: its values (one per axis) and the seeds' outcomes.
    public struct Cell: Sendable {
        public var values: [String]
        public var runs: [(seed: UInt64, outcome: FederatedRun.Outcome, seconds: Double)] = []
    }

    public let base: Experiment
    public let axes: [Axis]
    public let seeds: [UInt64]

    /// Checks every cell's experiment before anything runs: a key the experiment does not have or a value it cannot
    /// take is an error naming the cell.
    public init(base: Experiment, axes: [Axis], seeds: [UInt64]) throws {
        guard !seeds.isEmpty else { throw ExperimentError("a sweep needs at least one seed") }
        self.base = base
        self.axes = axes
        self.seeds = seeds
        for values in cells { _ = try experiment(values, seed: seeds[0]) }
    }

    /// Every combination of the axes' values, the first axis slowest.
    public var cells: [[String]] {
        axes.reduce([[]]) { partial, axis in partial.flatMap { prefix in axis.values.map { prefix + [$0] } } }
    }

    /// The base experiment with the cell's values and the seed put in, through its JSON form, so that every key
    /// an experiment file takes can be swept and is validated as in a file.
    public func experiment(_ values: [String], seed: UInt64) throws -> Experiment {
        var object = try JSONSerialization.jsonObject(with: try JSONEncoder().encode(base)) as! [String: Any]
        for (axis, value) in zip(axes, values) {
            let parsed: Any = (try? JSONSerialization.jsonObject(with: Data(value.utf8), options: [.fragmentsAllowed])) ?? value
            try Self.set(&object, path: axis.key.split(separator: ".").map(String.init), to: parsed, key: axis.key)
        }
        object["seed"] = seed
        object["name"] = ([base.name] + zip(axes, values).map { "\($0.key)=\($1)" }).joined(separator: " ")
        let data = try JSONSerialization.data(withJSONObject: object)
        return try Experiment.decode(data, source: "sweep cell \(zip(axes, values).map { "\($0.key)=\($1)" }.joined(separator: ", "))")
    }

    private static func set(_ object: inout [String: Any], path: [String], to value: Any, key: String) throws {
        guard let first = path.first else { return }
        if path.count == 1 {
            object[first] = value
            return
        }
        var inner = object[first] as? [String: Any] ?? [:]
        try set(&inner, path: Array(path.dropFirst()), to: value, key: key)
        object[first] = inner
    }

    /// Runs every cell with every seed, `jobs` runs at a time (each training its clients on `clientThreads`
    /// threads); `onRun` hears of each finished run, in the order they finish.
    public func run(train: Dataset, test: Dataset, jobs: Int, clientThreads: Int, stopAtTarget: Bool, logger: Logger,
                    onRun: @escaping @Sendable (_ cell: [String], _ seed: UInt64, _ outcome: FederatedRun.Outcome, _ seconds: Double) -> Void) throws -> [Cell] {
        let work = cells.flatMap { values in seeds.map { (values, $0) } }
        let results = Results()
        let queue = JobQueue(count: work.count)
        let experiments = try work.map { try experiment($0.0, seed: $0.1) }
        DispatchQueue.concurrentPerform(iterations: min(max(jobs, 1), work.count)) { _ in
            while let i = queue.take() {
                let start = ContinuousClock.now
                let result = Result {
                    let run = try FederatedRun(experiment: experiments[i], train: train, test: test, stopAtTarget: stopAtTarget, logger: logger)
                    return (try run.simulate(threads: clientThreads), start.duration(to: .now).seconds)
                }
                results.set(i, result)
                if case let .success((outcome, seconds)) = result { onRun(work[i].0, work[i].1, outcome, seconds) }
            }
        }
        var cells = self.cells.map { Cell(values: $0) }
        for (i, (values, seed)) in work.enumerated() {
            let (outcome, seconds) = try results.get(i).get()
            let c = self.cells.firstIndex(of: values)!
            cells[c].runs.append((seed, outcome, seconds))
        }
        return cells
    }

    /// The runs' results by index, filled from several threads.
    private final class Results: @unchecked Sendable {
        private let lock = NSLock()
        private var results: [Int: Result<(FederatedRun.Outcome, Double), Error>] = [:]
        func set(_ i: Int, _ r: Result<(FederatedRun.Outcome, Double), Error>) { lock.withLock { results[i] = r } }
        func get(_ i: Int) -> Result<(FederatedRun.Outcome, Double), Error> { lock.withLock { results[i]! } }
    }
}
