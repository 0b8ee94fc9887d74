import NNCore

extension Dataset {
    /// 60,000 random images of the model's input width with random labels, for timing the training step
    /// (whose cost does not depend on the pixels).
    public static func synthetic(spec: ModelSpec) -> Dataset {
        var rng = SeededRandom(seed: 3)
        let count = 60_000
        let images = (0..<(count * spec.inputWidth)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let labels = (0..<count).map { _ in UInt8(rng.next(below: spec.classes)) }
        return Dataset(name: "synthetic", images: images, labels: labels, rows: 1, columns: spec.inputWidth, classes: spec.classes)
    }
}
