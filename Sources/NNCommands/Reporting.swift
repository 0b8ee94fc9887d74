import ArgumentParser
import Foundation
import NNCluster
import NNCore
import NNData
import NNTensorBoard

/// One JSON object per epoch or round, the whole file rewritten atomically each time; and the same numbers as
/// TensorBoard scalars (tag = field name, step = the epoch or round), with the weights' histograms.
struct MetricsLog {
    let path: String?
    private var lines: [String] = []
    private let tensorboard: EventFile?

    /// Checks at once that the outputs can be written, so that a bad path fails before training, not after.
    init(_ output: OutputOptions) throws {
        if let path = output.metrics { try AtomicFile.checkWritable(path) }
        path = output.metrics
        tensorboard = try output.tensorboard.map { try EventFile(directory: $0) }
    }

    /// Non-finite numbers (a diverged loss) are written as null: JSON has no NaN.
    mutating func append(_ fields: [String: Any]) throws {
        if let tensorboard, let step = (fields["epoch"] ?? fields["round"]) as? Int {
            let scalars = fields.compactMap { tag, value -> (tag: String, value: Double)? in
                guard tag != "epoch", tag != "round", !(value is Bool) else { return nil }
                return ((value as? Double) ?? (value as? Int).map(Double.init)).map { (tag, $0) }
            }
            try tensorboard.scalars(scalars.sorted { $0.tag < $1.tag }, step: step)
        }
        guard let path else { return }
        let clean = fields.mapValues { value -> Any in
            if let x = value as? Double, !x.isFinite { return NSNull() }
            return value
        }
        lines.append(String(decoding: try JSONSerialization.data(withJSONObject: clean, options: [.sortedKeys]), as: UTF8.self))
        try AtomicFile.write(lines.joined(separator: "\n") + "\n", to: path)
    }

    /// A histogram of each parameter tensor of `network` (`weights/NAME`) at `step`, for TensorBoard.
    func histograms(of network: Network, step: Int) throws {
        guard let tensorboard else { return }
        for slot in network.parameterLayout {
            try tensorboard.histogram("weights/\(slot.tensor.name)", values: UnsafeBufferPointer(start: network.parameters.base + slot.offset, count: slot.tensor.count), step: step)
        }
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
