import ArgumentParser
import Foundation
import NNCluster
import NNCore

public struct SweepCommand: AsyncParsableCommand {
    public init() {}
    public static let configuration = CommandConfiguration(
        commandName: "sweep",
        abstract: "Run a grid of a federated experiment's settings over several seeds in simulation, and tabulate it.",
        discussion: """
            Example: nn sweep --config experiments/mnist-2nn-iid.json --grid 'learningRate=0.05,0.1,0.2' --seeds 1-3 --out lr
            prints and writes (lr.md, lr.csv) the rounds to the target accuracy per cell and seed, their median and \
            range, the final accuracy and the wall time. Any experiment key can be a grid axis, nested ones with a dot \
            (strategy.mu, privacy.noiseMultiplier); several --grid options make a product.
            """)

    @Option(help: ArgumentHelp("Federated experiment file (JSON; see docs/federated.md).", valueName: "file"), completion: .file(extensions: ["json"]))
    var config: String

    @Option(help: "An axis of the grid: KEY=V1,V2,… (repeat for more axes).")
    var grid: [String] = []

    @Option(help: "Seeds: a range 1-3 or a list 1,2,5 (default: the experiment's).")
    var seeds: String?

    @Option(help: "Runs at a time (default: the processor count / --client-threads).")
    var jobs: Int?

    @Option(help: "Threads that train a round's clients within each run.")
    var clientThreads: Int = 1

    @Flag(help: "Stop each run once it reaches the experiment's target accuracy (final accuracy is then the accuracy there).")
    var stopAtTarget = false

    @Option(help: "Write the table to PREFIX.md and one row per run to PREFIX.csv.")
    var out: String?

    @Option(help: ArgumentHelp("Folder with the experiment's data set (default: its usual folder).", valueName: "dir"), completion: .directory)
    var data: String?

    @OptionGroup var global: GlobalOptions

    public func validate() throws {
        guard clientThreads >= 1 else { throw ValidationError("--client-threads must be at least 1") }
        if let jobs, jobs < 1 { throw ValidationError("--jobs must be at least 1") }
        _ = try seedList(default: 1)
    }

    /// `--seeds` as a list.
    func seedList(default seed: UInt64) throws -> [UInt64] {
        guard let seeds else { return [seed] }
        let bounds = seeds.split(separator: "-").map { UInt64($0.trimmingCharacters(in: .whitespaces)) }
        if bounds.count == 2, let low = bounds[0], let high = bounds[1], low <= high, high - low < 1000 { return Array(low...high) }
        let list = seeds.split(separator: ",").map { UInt64($0.trimmingCharacters(in: .whitespaces)) }
        guard !list.isEmpty, list.allSatisfy({ $0 != nil }) else { throw ValidationError("--seeds takes a range like 1-3 or a list like 1,2,5; got '\(seeds)'") }
        return list.map { $0! }
    }

    public func run() async throws {
        let logger = try global.start("nn.sweep")
        let base = try Experiment.load(config)
        if stopAtTarget && base.targetAccuracy == nil { throw ValidationError("--stop-at-target: \(config) sets no targetAccuracy") }
        let sweep: Sweep
        do {
            sweep = try Sweep(base: base, axes: try grid.map(Sweep.Axis.init(parsing:)), seeds: try seedList(default: base.seed))
        } catch let error as ExperimentError {
            throw ValidationError("\(config): \(error)")
        }
        let dataOptions = try DataOptions.parse(data.map { ["--data", $0] } ?? []).fixing(base)
        let (train, test) = try dataOptions.load(logger)
        try check(base.model, fits: train)
        let jobs = self.jobs ?? max(1, ProcessInfo.processInfo.activeProcessorCount / clientThreads)
        let runs = sweep.cells.count * sweep.seeds.count
        logger.info("\(runs) runs (\(sweep.cells.count) cells × \(sweep.seeds.count) seeds), \(jobs) at a time, \(clientThreads) client thread\(clientThreads == 1 ? "" : "s") each")
        let target = base.targetAccuracy, axes = sweep.axes
        let cells = try sweep.run(train: train, test: test, jobs: jobs, clientThreads: clientThreads, stopAtTarget: stopAtTarget, logger: logger) { values, seed, outcome, seconds in
            let name = zip(axes, values).map { "\($0.key)=\($1)" }.joined(separator: " ")
            let reached = target.map { t in outcome.roundToTarget.map { " \(Format.percent(t)) in round \($0)," } ?? " \(Format.percent(t)) not reached," } ?? ""
            print("\(name.isEmpty ? "run" : name) seed \(seed):\(reached) final \(Format.percent(outcome.last?.accuracy ?? 0)) after \(outcome.rounds) rounds (\(String(format: "%.1f", seconds)) s)")
        }
        let table = SweepTable(sweep: sweep, cells: cells, target: target)
        print("")
        print(table.markdown, terminator: "")
        if let out {
            try AtomicFile.write(Array(table.markdown.utf8), to: out + ".md")
            try AtomicFile.write(Array(table.csv.utf8), to: out + ".csv")
            logger.info("wrote \(out).md and \(out).csv")
        }
    }
}

/// The sweep's table: per cell, rounds to the target for each seed, their median and range, the final accuracy,
/// the wall time; and the runs one a line as CSV.
struct SweepTable {
    let sweep: Sweep
    let cells: [Sweep.Cell]
    let target: Double?

    var markdown: String {
        let seeds = sweep.seeds.map(String.init).joined(separator: ", ")
        var header = sweep.axes.map(\.key)
        if let target { header += ["rounds to \(Format.percent(target)), seeds \(seeds)", "median", "range"] }
        header += ["final accuracy, seeds \(seeds)", "median", "rounds run", "seconds a run (median)"]
        var lines = ["| " + header.joined(separator: " | ") + " |", "|" + String(repeating: " --- |", count: header.count)]
        for cell in cells {
            var row = cell.values
            if target != nil {
                let rounds = cell.runs.map(\.outcome.roundToTarget)
                row.append(rounds.map { $0.map(String.init) ?? "–" }.joined(separator: ", "))
                row.append(Self.median(rounds.map { $0.map(Double.init) ?? .infinity }).map {
                    $0.isFinite ? "**\($0 == $0.rounded() ? String(Int($0)) : String(format: "%.1f", $0))**" : "not reached"
                } ?? "")
                let reached = rounds.compactMap { $0 }
                row.append(reached.count == rounds.count ? "\(reached.min()!)–\(reached.max()!)" : "\(reached.count) of \(rounds.count) reached")
            }
            let finals = cell.runs.map { $0.outcome.last?.accuracy ?? 0 }
            row.append(finals.map { Format.percent($0) }.joined(separator: ", "))
            row.append(Self.median(finals).map { Format.percent($0) } ?? "")
            row.append(cell.runs.map { String($0.outcome.rounds) }.joined(separator: ", "))
            row.append(Self.median(cell.runs.map(\.seconds)).map { String(format: "%.1f", $0) } ?? "")
            lines.append("| " + row.joined(separator: " | ") + " |")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    var csv: String {
        var lines = [(sweep.axes.map(\.key) + ["seed", "rounds_to_target", "rounds", "final_accuracy", "best_accuracy", "seconds"]).joined(separator: ",")]
        for cell in cells {
            for run in cell.runs {
                lines.append((cell.values.map(Self.field) + [String(run.seed), run.outcome.roundToTarget.map(String.init) ?? "",
                                                             String(run.outcome.rounds), String(run.outcome.last?.accuracy ?? 0),
                                                             String(run.outcome.bestAccuracy), String(format: "%.3f", run.seconds)]).joined(separator: ","))
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// A CSV field, quoted when it holds a comma or a quote.
    static func field(_ text: String) -> String {
        text.contains(",") || text.contains("\"") ? "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : text
    }

    /// The median (the mean of the middle two for an even count); nil for none.
    static func median(_ values: [Double]) -> Double? {
        guard !values.isEmpty else { return nil }
        let sorted = values.sorted(), n = sorted.count
        return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2
    }
}
