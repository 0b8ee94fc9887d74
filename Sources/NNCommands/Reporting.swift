import ArgumentParser
import Foundation
import NNCluster
import NNCore
import NNData

/// One JSON object per epoch or round, the whole file rewritten atomically each time.
struct MetricsLog {
    let path: String?
    private var lines: [String] = []

    /// Checks at once that `path` can be written, so that a bad path fails before training, not after.
    init(path: String?) throws {
        if let path { try AtomicFile.checkWritable(path) }
        self.path = path
    }

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
func epochLine(_ report: EpochReport, of epochs: Int) -> String {
    let test = report.evaluation!
    return String(format: "epoch %d/%d  loss %.4f  train acc %@  test loss %.4f  test acc %@  %@ samples/s  %@",
                  report.epoch, epochs, report.total.result.meanLoss, Format.percent(report.total.result.accuracy), test.loss,
                  Format.percent(test.accuracy), Format.rate(report.samplesPerSecond), Format.seconds(report.total.seconds))
}

/// The fields of an epoch's JSON line that every trainer writes.
func epochFields(_ report: EpochReport) -> [String: Any] {
    [
        "epoch": report.epoch, "train_loss": report.total.result.meanLoss, "train_accuracy": report.total.result.accuracy,
        "test_loss": report.evaluation!.loss, "test_accuracy": report.evaluation!.accuracy,
        "samples_per_second": report.samplesPerSecond, "seconds": report.total.seconds, "learning_rate": Double(report.learningRate),
    ]
}

/// Test accuracy, per-class metrics and confusion matrix at the end of a run.
func printFinalReport(_ evaluation: Evaluation, test: Dataset, classNames: [String]) {
    print("\ntest accuracy \(Format.percent(evaluation.accuracy)) on \(test.sampleCount) images\n")
    print(evaluation.confusion.report(classNames: classNames))
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
