import ArgumentParser
import NNCore
import NNData

public struct Eval: AsyncParsableCommand {
    public init() {}
    public static let configuration = CommandConfiguration(abstract: "Report a checkpoint's accuracy, per-class metrics and confusion matrix on the test set.")

    @Option(help: "Checkpoint to evaluate (safetensors).", completion: .file(extensions: ["safetensors"]))
    var model: String

    @OptionGroup var dataOptions: DataOptions
    @OptionGroup var global: GlobalOptions

    public func run() async throws {
        let logger = try global.start("nn.eval")
        let checkpoint = try Checkpoint.load(from: model)
        let (_, test) = try dataOptions.load(logger)
        try check(checkpoint.network.spec, fits: test)
        let evaluation = checkpoint.network.evaluate(test)
        print(String(format: "%@: %@, test loss %.4f, test accuracy %@ on %d images\n", model, checkpoint.network.spec.description,
                     evaluation.loss, Format.percent(evaluation.accuracy), test.sampleCount))
        print(evaluation.confusion.report(classNames: dataOptions.kind.classNames))
    }
}
