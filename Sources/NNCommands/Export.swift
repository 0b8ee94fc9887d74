import ArgumentParser
import NNCore
import NNONNX

public struct Export: AsyncParsableCommand {
    public init() {}
    public static let configuration = CommandConfiguration(
        abstract: "Write a checkpoint in a format other runtimes read: ONNX.",
        discussion: "The ONNX model takes `image`, float32 [N, 784] in 0…1, and gives `logits` and `probabilities` [N, 10].")

    enum Format: String, ExpressibleByArgument, CaseIterable { case onnx }

    @Option(help: "Checkpoint to export (safetensors).", completion: .file(extensions: ["safetensors"]))
    var model: String

    @Option(help: "Format: onnx.")
    var format: Format = .onnx

    @Option(name: [.customShort("o"), .long], help: "File to write.", completion: .file(extensions: ["onnx"]))
    var output: String

    @OptionGroup var global: GlobalOptions

    public func run() async throws {
        let logger = try global.start("nn.export")
        let checkpoint = try Checkpoint.load(from: model)
        let bytes = try ONNXExport.encode(checkpoint)
        try AtomicFile.write(bytes, to: output)
        logger.info("wrote \(output): ONNX opset \(ONNXExport.opset), \(checkpoint.network.spec.description), \(checkpoint.network.parameterCount) parameters, \(bytes.count) bytes")
    }
}
