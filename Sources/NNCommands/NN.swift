import ArgumentParser
import CNNSystem
import Foundation
import Logging
import NNCluster
import NNCore
import NNData

public struct NN: AsyncParsableCommand {
    public init() {}
    public static let configuration = CommandConfiguration(
        commandName: "nn",
        abstract: "Train, evaluate and run multilayer perceptrons on MNIST-style data.",
        subcommands: [Train.self, Eval.self, Predict.self, Export.self, Serve.self, Bench.self, DataCommand.self, Launch.self, Simulate.self, Plot.self,
                      CoordinatorCommand.self, WorkerCommand.self, ClusterCommand.self, Keygen.self, PrivacyCommand.self, SweepCommand.self])
}

/// Where the data comes from: `--dataset` and `--data`, with the data set's environment variable and default folder.
struct DataOptions: ParsableArguments {
    @Option(help: "Data set: \(DatasetKind.allCases.map(\.rawValue).joined(separator: ", ")) (default: mnist).")
    var dataset: DatasetKind?

    var kind: DatasetKind { dataset ?? .mnist }

    @Option(help: ArgumentHelp("Folder with the four IDX files, raw or .gz.",
                               discussion: "Default: $NN_MNIST_DIR or ~/.local/share/nn/mnist; for Fashion-MNIST $NN_FASHION_MNIST_DIR or /usr/share/datasets/fashion-mnist."),
            completion: .directory)
    var data: String?

    var directory: String { data ?? kind.defaultDirectory() }

    /// The `--dataset` and `--data` arguments as given, to pass on to another process.
    var arguments: [String] { (dataset.map { ["--dataset", $0.rawValue] } ?? []) + (data.map { ["--data", $0] } ?? []) }

    func load(_ logger: Logger) throws -> (train: Dataset, test: Dataset) {
        let start = ContinuousClock.now
        let sets = try kind.load(from: directory)
        logger.info("loaded \(kind.rawValue) from \(directory): \(sets.train.sampleCount) training and \(sets.test.sampleCount) test images in \(Format.seconds(start.duration(to: .now)))")
        return sets
    }

    /// These options for an experiment's data set: `--dataset`, if given, must agree with it.
    func fixing(_ experiment: Experiment) throws -> DataOptions {
        if let dataset, dataset != experiment.datasetKind {
            throw ExperimentError("--dataset \(dataset.rawValue) contradicts the experiment's dataset \(experiment.dataset)")
        }
        var options = self
        options.dataset = experiment.datasetKind
        return options
    }
}

extension DatasetKind: ExpressibleByArgument {}
extension Activation.Kind: ExpressibleByArgument {}
extension Initializer: ExpressibleByArgument {}
extension RobustGradients.Rule: ExpressibleByArgument {}
extension Loss: ExpressibleByArgument {}
extension OptimizerSettings.Kind: ExpressibleByArgument {}
extension LearningRateSchedule.Kind: ExpressibleByArgument {}

/// Options every command has: log level and BLAS threads.
struct GlobalOptions: ParsableArguments {
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    @Option(help: "Log format on standard error: text, or json (one object a line, for log collectors).")
    var logFormat: LogFormat = .text

    @Option(help: "OpenBLAS threads for this process.")
    var threads: Int = 1

    enum LogFormat: String, ExpressibleByArgument, CaseIterable { case text, json }

    /// Sets up logging to standard error, line-buffered standard output (so that a pipe or a file sees each line
    /// when it is written, not when the process ends) and the BLAS thread count; returns the command's logger.
    func start(_ label: String) throws -> Logger {
        guard let level = Logger.Level(rawValue: logLevel) else {
            throw ValidationError("unknown log level '\(logLevel)'")
        }
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
        nn_line_buffer_stdout()
        switch logFormat {
        case .text: LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        case .json: LoggingSystem.bootstrap { JSONLogHandler(label: $0) }
        }
        var logger = Logger(label: label)
        logger.logLevel = level
        BLAS.setThreads(threads)
        return logger
    }
}

/// Human-readable numbers.
enum Format {
    static func seconds(_ d: Duration) -> String { seconds(d.seconds) }
    static func seconds(_ s: Double) -> String { s < 10 ? String(format: "%.2fs", s) : String(format: "%.0fs", s) }
    static func percent(_ x: Double) -> String { String(format: "%.2f%%", x * 100) }
    static func rate(_ x: Double) -> String { x >= 1e6 ? String(format: "%.2fM", x / 1e6) : x >= 1e3 ? String(format: "%.1fk", x / 1e3) : String(format: "%.0f", x) }
}


/// Peak resident set size of this process, in bytes.
func peakResidentBytes() -> Int {
    var usage = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
    return usage.ru_maxrss * 1024
}
