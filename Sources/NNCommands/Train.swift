import ArgumentParser
import NNCluster
import NNCore
import NNData

public struct Train: AsyncParsableCommand {
    public init() {}
    public static let configuration = CommandConfiguration(abstract: "Train a network on one machine and report test accuracy.")

    @OptionGroup var training: TrainingOptions

    @Option(help: "Threads that compute each batch's gradient, each on a contiguous slice of it: the same sums, bit for bit, as that many workers of batch / threads each (nn launch), in one process.")
    var batchThreads: Int = 1

    @OptionGroup var output: OutputOptions
    @OptionGroup var dataOptions: DataOptions
    @OptionGroup var runState: RunStateOptions
    @OptionGroup var global: GlobalOptions

    public func run() async throws {
        let logger = try global.start("nn.train")
        try BatchThreads.validate(batchThreads)
        BatchThreads.warnIfOversubscribed(batchThreads, blasThreads: global.threads, logger: logger)
        var settings = try training.settings(dataset: dataOptions.kind.rawValue, checkpoint: output.out)
        settings.batchThreads = batchThreads
        if settings.model.batchNorm && settings.batch < 2 * batchThreads {
            throw ValidationError(batchThreads == 1 ? "batch normalisation needs --batch 2 or more" : "batch normalisation needs 2 rows a thread: --batch \(2 * batchThreads) or more")
        }
        let (train, test) = try dataOptions.load(logger)
        try check(settings.model, fits: train)
        let run = LocalTrainingRun(settings: settings, train: train, test: test, runState: runState.settings(defaultEvery: 1), logger: logger)
        logger.info("model \(settings.model.description): \(run.network.parameterCount) parameters; \(settings.optimizer.kind.rawValue) lr \(settings.schedule.base), batch \(settings.batch)\(batchThreads == 1 ? "" : " on \(batchThreads) threads"), \(settings.epochs) epochs, seed \(settings.seed)")
        var metrics = try MetricsLog(output)
        var bar = ProgressBar(label: "", total: 0), barEpoch = 0
        let evaluation = try run.run(onStep: { epoch, progress in
            if epoch != barEpoch { (bar, barEpoch) = (ProgressBar(label: "epoch \(epoch)/\(settings.epochs)", total: progress.totalSamples), epoch) }
            bar.update(done: progress.samples, detail: String(format: "loss %.4f acc %@", progress.meanLoss, Format.percent(progress.accuracy)))
        }, onEpoch: { report in
            bar.finish()
            print(epochLine(report, of: settings.epochs))
            try metrics.append(epochFields(report))
            try metrics.histograms(of: run.network, step: report.epoch)
        })
        printFinalReport(evaluation, test: test, classNames: dataOptions.kind.classNames)
        logger.info("peak resident memory \(peakResidentBytes() >> 20) MiB")
    }
}
