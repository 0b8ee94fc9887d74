/// Mean loss and confusion matrix of a network on a data set.
public struct Evaluation: Codable, Sendable {
    public var loss: Double
    public var confusion: ConfusionMatrix
    public var accuracy: Double { confusion.accuracy }

    /// The evaluation of the union of disjoint parts.
    public static func merging(_ parts: [Evaluation]) -> Evaluation {
        var confusion = ConfusionMatrix(classes: parts[0].confusion.classes)
        var lossSum = 0.0
        for part in parts {
            confusion.add(part.confusion)
            lossSum += part.loss * Double(part.confusion.total)
        }
        return Evaluation(loss: lossSum / Double(max(confusion.total, 1)), confusion: confusion)
    }
}

extension Network {
    /// Index of the largest of a row's `n` logits (the first on ties).
    static func argmax(_ z: UnsafePointer<Float>, _ n: Int) -> Int {
        var best = 0
        for j in 1..<n where z[j] > z[best] { best = j }
        return best
    }

    /// Loss and confusion matrix over the samples of `source` in `range` (default: all), in inference mode.
    public func evaluate(_ source: BatchSource, range: Range<Int>? = nil, batchSize: Int = 1000) -> Evaluation {
        let buffer = BatchBuffer(capacity: batchSize, inputWidth: spec.inputWidth)
        var confusion = ConfusionMatrix(classes: spec.classes)
        var lossSum = 0.0
        let all = Array(range ?? 0..<source.sampleCount)
        for start in stride(from: 0, to: all.count, by: batchSize) {
            let indices = all[start..<min(start + batchSize, all.count)]
            source.gather(indices, into: buffer.x.base, labels: buffer.labels)
            let logits = forward(buffer.x.base, batch: indices.count, pass: .inference)
            lossSum += spec.loss.evaluate(logits: logits, labels: buffer.labels, batch: indices.count, classes: spec.classes, gradient: nil)
                * Double(indices.count)
            for r in 0..<indices.count {
                confusion.add(truth: Int(buffer.labels[r]), predicted: Network.argmax(logits + r * spec.classes, spec.classes))
            }
        }
        return Evaluation(loss: lossSum / Double(max(all.count, 1)), confusion: confusion)
    }
}
