import ArgumentParser
import Foundation
import NNCore
import NNData

public struct Predict: AsyncParsableCommand {
    public init() {}
    public static let configuration = CommandConfiguration(
        abstract: "Classify test-set images by index, or grayscale PGM files, and print the top classes.")

    @Option(help: "Checkpoint (safetensors).", completion: .file(extensions: ["safetensors"]))
    var model: String

    @Option(parsing: .upToNextOption, help: "Test-set indices to classify.")
    var index: [Int] = []

    @Argument(help: "PGM images (binary P5 or plain P2) of the model's input size, e.g. 28×28.", completion: .file(extensions: ["pgm"]))
    var images: [String] = []

    @Option(help: "How many classes to show per image.")
    var top: Int = 3

    @Flag(help: "One JSON object per line instead of text.")
    var json = false

    @OptionGroup var dataOptions: DataOptions
    @OptionGroup var global: GlobalOptions

    public func validate() throws {
        guard !index.isEmpty || !images.isEmpty else { throw ValidationError("give test-set indices (--index 0 1 2) or PGM image files") }
        guard top >= 1 else { throw ValidationError("--top must be at least 1") }
    }

    public func run() async throws {
        let logger = try global.start("nn.predict")
        let network = try Checkpoint.load(from: model).network
        let spec = network.spec
        var inputs: [(name: String, label: Int?, pixels: [Float])] = []
        if !index.isEmpty {
            let (_, test) = try dataOptions.load(logger)
            try check(spec, fits: test)
            let buffer = BatchBuffer(capacity: 1, inputWidth: spec.inputWidth)
            for i in index {
                guard (0..<test.sampleCount).contains(i) else {
                    throw ValidationError("index \(i) is outside the test set (0…\(test.sampleCount - 1))")
                }
                test.gather([i], into: buffer.x.base, labels: buffer.labels)
                inputs.append(("test[\(i)]", Int(buffer.labels[0]), Array(UnsafeBufferPointer(start: buffer.x.base, count: spec.inputWidth))))
            }
        }
        for path in images {
            let image = try PGMImage(contentsOf: path)
            guard image.pixels.count == spec.inputWidth else {
                throw ValidationError("\(path) is \(image.width)×\(image.height) = \(image.pixels.count) pixels; the model takes \(spec.inputWidth)")
            }
            inputs.append((path, nil, image.pixels))
        }
        let names = dataOptions.kind.classNames.count == spec.classes ? dataOptions.kind.classNames : (0..<spec.classes).map(String.init)
        for input in inputs {
            let logits = input.pixels.withUnsafeBufferPointer { x in
                Array(UnsafeBufferPointer(start: network.forward(x.baseAddress!, batch: 1, pass: .inference), count: spec.classes))
            }
            let probabilities = spec.loss.probabilities(logits)
            let ranked = probabilities.indices.sorted { probabilities[$0] > probabilities[$1] }.prefix(top)
            if json {
                var object: [String: Any] = [
                    "input": input.name, "predicted": ranked.first!, "logits": logits.map(Double.init),
                    "probabilities": probabilities.map(Double.init),
                    "top": ranked.map { ["class": $0, "probability": Double(probabilities[$0])] as [String: Any] },
                ]
                if let label = input.label { object["label"] = label }
                print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
            } else {
                let truth = input.label.map { " (label \(names[$0]))" } ?? ""
                let guesses = ranked.map { String(format: "%@ %.4f", names[$0], probabilities[$0]) }.joined(separator: ", ")
                print("\(input.name)\(truth): \(guesses)")
            }
        }
    }
}
