import ArgumentParser
import Foundation
import NNCore
import NNData

public struct Train: AsyncParsableCommand {
    public init() {}
    public static let configuration = CommandConfiguration(abstract: "Train a network on one machine and report test accuracy.")

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var optimization: OptimizationOptions
    @OptionGroup var dataOptions: DataOptions
    @OptionGroup var runOptions: RunOptions
    @OptionGroup var global: GlobalOptions

    public func run() async throws {
        let logger = try global.start("nn.train")
        let (batch, epochs, seed) = (runOptions.batch, runOptions.epochs, runOptions.seed)
        let spec = try modelOptions.spec()
        if spec.batchNorm && batch < 2 { throw ValidationError("batch normalisation needs --batch 2 or more") }
        let (train, test) = try dataOptions.load(logger)
        try check(spec, fits: train)

        let network = Network(spec: spec, seed: seed)
        let trainer = Trainer(network: network, optimizer: optimization.settings, schedule: optimization.learningRate,
                              clipNorm: optimization.clip, seed: seed)
        logger.info("model \(spec.description): \(network.parameterCount) parameters; \(optimization.optimizer.rawValue) lr \(optimization.lr), batch \(batch), \(epochs) epochs, seed \(seed)")

        let buffer = BatchBuffer(capacity: batch, inputWidth: spec.inputWidth)
        var metrics = MetricsLog(path: runOptions.metrics)
        var evaluation = network.evaluate(test)
        for epoch in 1...epochs {
            let order = epochOrder(seed: seed, epoch: epoch, count: train.sampleCount)
            var bar = ProgressBar(label: "epoch \(epoch)/\(epochs)", total: order.count)
            let start = ContinuousClock.now
            let result = try trainer.trainEpoch(train, order: order, batchSize: batch, buffer: buffer, epochs: epochs) { p in
                bar.update(done: p.samples, detail: String(format: "loss %.4f acc %@", p.meanLoss, Format.percent(p.accuracy)))
            }
            let seconds = start.duration(to: .now).seconds
            bar.finish()
            evaluation = network.evaluate(test)
            let samplesPerSecond = Double(result.samples) / seconds
            print(epochLine(epoch, of: epochs, loss: result.meanLoss, accuracy: result.accuracy, test: evaluation,
                            samplesPerSecond: samplesPerSecond, seconds: seconds))
            try metrics.append([
                "epoch": epoch, "train_loss": result.meanLoss, "train_accuracy": result.accuracy,
                "test_loss": evaluation.loss, "test_accuracy": evaluation.accuracy,
                "samples_per_second": samplesPerSecond, "seconds": seconds, "learning_rate": Double(trainer.learningRate),
            ])
        }
        printFinalReport(evaluation, test: test, classNames: dataOptions.kind.classNames)
        if let out = runOptions.out {
            let record = TrainingRecord(dataset: dataOptions.kind.rawValue, mode: "local", optimizer: optimization.settings,
                                        schedule: optimization.learningRate, clip: optimization.clip, batch: batch, epochs: epochs, seed: seed)
            try saveCheckpoint(network, record: record, evaluation: evaluation, to: out)
            logger.info("wrote \(out)")
        }
        logger.info("peak resident memory \(peakResidentBytes() >> 20) MiB")
    }
}
