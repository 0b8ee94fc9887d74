import ArgumentParser
import Foundation
import NNCore
import NNData

/// Settings recorded in a checkpoint's metadata, so a model says how it was made.
struct TrainingRecord: Codable {
    var dataset: String
    var optimizer: OptimizerSettings
    var schedule: LearningRateSchedule
    var clip: Float?
    var batch: Int
    var epochs: Int
    var seed: UInt64
}

struct Train: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Train a network on one machine and report test accuracy.")

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var optimization: OptimizationOptions
    @OptionGroup var dataOptions: DataOptions
    @OptionGroup var global: GlobalOptions

    @Option(help: "Mini-batch size.")
    var batch: Int = 64

    @Option(help: "Passes over the training set.")
    var epochs: Int = 10

    @Option(help: "Seed for initialisation, shuffling and dropout.")
    var seed: UInt64 = 1

    @Option(help: "Write the trained model here (safetensors).", completion: .file(extensions: ["safetensors"]))
    var out: String?

    @Option(help: "Append one JSON object per epoch to this file.")
    var metrics: String?

    func validate() throws {
        guard batch >= 1 else { throw ValidationError("--batch must be at least 1") }
        guard epochs >= 1 else { throw ValidationError("--epochs must be at least 1") }
    }

    func run() async throws {
        let logger = try global.start("nn.train")
        let spec = try modelOptions.spec()
        if spec.batchNorm && batch < 2 { throw ValidationError("batch normalisation needs --batch 2 or more") }
        let (train, test) = try dataOptions.load(logger)
        try check(spec, fits: train)

        let network = Network(spec: spec, seed: seed)
        let trainer = Trainer(network: network, optimizer: optimization.settings, schedule: optimization.learningRate,
                              clipNorm: optimization.clip, seed: seed)
        logger.info("model \(spec.description): \(network.parameterCount) parameters; \(optimization.optimizer.rawValue) lr \(optimization.lr), batch \(batch), \(epochs) epochs, seed \(seed)")

        let buffer = BatchBuffer(capacity: batch, inputWidth: spec.inputWidth)
        var metricLines: [String] = []
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
            print(String(format: "epoch %d/%d  loss %.4f  train acc %@  test loss %.4f  test acc %@  %@ samples/s  %@",
                         epoch, epochs, result.meanLoss, Format.percent(result.accuracy), evaluation.loss,
                         Format.percent(evaluation.accuracy), Format.rate(samplesPerSecond), Format.seconds(seconds)))
            if let metrics {
                let line: [String: Any] = [
                    "epoch": epoch, "train_loss": result.meanLoss, "train_accuracy": result.accuracy,
                    "test_loss": evaluation.loss, "test_accuracy": evaluation.accuracy,
                    "samples_per_second": samplesPerSecond, "seconds": seconds,
                    "learning_rate": Double(trainer.learningRate),
                ]
                metricLines.append(String(decoding: try JSONSerialization.data(withJSONObject: line, options: [.sortedKeys]), as: UTF8.self))
                try AtomicFile.write(metricLines.joined(separator: "\n") + "\n", to: metrics)
            }
        }
        print("\ntest accuracy \(Format.percent(evaluation.accuracy)) on \(test.sampleCount) images\n")
        print(evaluation.confusion.report(classNames: dataOptions.dataset.classNames))
        if let out {
            let record = TrainingRecord(dataset: dataOptions.dataset.rawValue, optimizer: optimization.settings,
                                        schedule: optimization.learningRate, clip: optimization.clip, batch: batch, epochs: epochs, seed: seed)
            let metadata = [
                "training": String(decoding: try JSONEncoder.sorted.encode(record), as: UTF8.self),
                "test_accuracy": String(format: "%.4f", evaluation.accuracy),
            ]
            try Checkpoint(network: network, metadata: metadata).save(to: out)
            logger.info("wrote \(out)")
        }
        logger.info("peak resident memory \(peakResidentBytes() >> 20) MiB")
    }
}

/// The model's input and output widths must match the data set's image size and class count.
func check(_ spec: ModelSpec, fits data: Dataset) throws {
    guard spec.inputWidth == data.inputWidth else {
        throw ValidationError("the model takes \(spec.inputWidth) inputs but \(data.name) images have \(data.inputWidth) pixels (\(data.rows)×\(data.columns))")
    }
    guard spec.classes == data.classes else {
        throw ValidationError("the model has \(spec.classes) outputs but \(data.name) has \(data.classes) classes")
    }
}
