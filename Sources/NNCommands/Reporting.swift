import ArgumentParser
import Foundation
import NNCore
import NNData

/// Settings recorded in a checkpoint's metadata, so a model says how it was made.
struct TrainingRecord: Codable {
    var dataset: String
    var mode: String
    var workers: Int?
    var optimizer: OptimizerSettings
    var schedule: LearningRateSchedule
    var clip: Float?
    var batch: Int
    var epochs: Int
    var seed: UInt64
}

/// One JSON object per epoch or round, the whole file rewritten atomically each time.
struct MetricsLog {
    let path: String?
    private var lines: [String] = []

    init(path: String?) { self.path = path }

    /// Non-finite numbers (a diverged loss) are written as null: JSON has no NaN.
    mutating func append(_ fields: [String: Any]) throws {
        guard let path else { return }
        let clean = fields.mapValues { value -> Any in
            if let x = value as? Double, !x.isFinite { return NSNull() }
            return value
        }
        lines.append(String(decoding: try JSONSerialization.data(withJSONObject: clean, options: [.sortedKeys]), as: UTF8.self))
        try AtomicFile.write(lines.joined(separator: "\n") + "\n", to: path)
    }
}

/// The per-epoch line every trainer prints.
func epochLine(_ epoch: Int, of epochs: Int, loss: Double, accuracy: Double, test: Evaluation, samplesPerSecond: Double, seconds: Double) -> String {
    String(format: "epoch %d/%d  loss %.4f  train acc %@  test loss %.4f  test acc %@  %@ samples/s  %@",
           epoch, epochs, loss, Format.percent(accuracy), test.loss, Format.percent(test.accuracy),
           Format.rate(samplesPerSecond), Format.seconds(seconds))
}

/// Test accuracy, per-class metrics and confusion matrix at the end of a run.
func printFinalReport(_ evaluation: Evaluation, test: Dataset, classNames: [String]) {
    print("\ntest accuracy \(Format.percent(evaluation.accuracy)) on \(test.sampleCount) images\n")
    print(evaluation.confusion.report(classNames: classNames))
}

func saveCheckpoint(_ network: Network, record: TrainingRecord, evaluation: Evaluation, to path: String) throws {
    let metadata = [
        "training": String(decoding: try JSONEncoder.sorted.encode(record), as: UTF8.self),
        "test_accuracy": String(format: "%.4f", evaluation.accuracy),
    ]
    try Checkpoint(network: network, metadata: metadata).save(to: path)
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
