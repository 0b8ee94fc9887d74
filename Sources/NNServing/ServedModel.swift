import Foundation
import NNCore

/// A loaded checkpoint, ready to answer from several threads at once: each request borrows a network of its own
/// (layers keep their workspaces), made on demand from the checkpoint's values and kept for the next request.
public final class ServedModel: @unchecked Sendable {
    public let spec: ModelSpec
    public let metadata: [String: String]
    public let path: String
    public let loadedAt: Date
    public let parameterCount: Int
    private let parameters: [Float]
    private let state: [Float]
    private let lock = NSLock()
    private var idle: [Network]

    public init(_ checkpoint: Checkpoint, path: String) {
        let network = checkpoint.network
        spec = network.spec
        metadata = checkpoint.metadata
        self.path = path
        loadedAt = Date()
        parameterCount = network.parameterCount
        parameters = Array(UnsafeBufferPointer(start: network.parameters.base, count: network.parameters.count))
        state = Array(UnsafeBufferPointer(start: network.state.base, count: network.state.count))
        idle = [network]
    }

    /// Logits for `count` rows of `spec.inputWidth` inputs, computed as one batch: `count × classes` floats.
    public func logits(_ inputs: [Float], count: Int) -> [Float] {
        precondition(inputs.count == count * spec.inputWidth)
        let network = borrow()
        defer { giveBack(network) }
        return inputs.withUnsafeBufferPointer { x in
            Array(UnsafeBufferPointer(start: network.forward(x.baseAddress!, batch: count, pass: .inference), count: count * spec.classes))
        }
    }

    private func borrow() -> Network {
        if let network = lock.withLock({ idle.popLast() }) { return network }
        let network = Network(spec: spec)
        network.load(parameters: parameters, state: state)
        return network
    }

    private func giveBack(_ network: Network) { lock.withLock { idle.append(network) } }

    /// What `GET /v1/model` answers: the spec, the size, and the checkpoint's metadata (training settings and test
    /// accuracy, parsed where they are JSON).
    public func description() -> [String: Any] {
        var info: [String: Any] = [
            "path": path,
            "architecture": spec.description,
            "widths": spec.widths,
            "activation": spec.activation.rawValue,
            "batchNorm": spec.batchNorm,
            "dropout": Double(spec.dropout),
            "residualBlocks": spec.residualBlocks,
            "loss": spec.loss.rawValue,
            "parameters": parameterCount,
            "inputWidth": spec.inputWidth,
            "classes": spec.classes,
            "loadedAt": ISO8601DateFormatter().string(from: loadedAt),
        ]
        if let accuracy = metadata["test_accuracy"].flatMap(Double.init) { info["testAccuracy"] = accuracy }
        var settings: [String: Any] = [:]
        for (key, value) in metadata where key != "test_accuracy" {
            settings[key] = (try? JSONSerialization.jsonObject(with: Data(value.utf8))) ?? value
        }
        info["training"] = settings
        return info
    }
}
