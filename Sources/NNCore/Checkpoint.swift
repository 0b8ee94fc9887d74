import Foundation

/// A trained network as a safetensors file: one tensor per layer tensor (named as in `Network.parameterLayout`
/// and `stateLayout`), the `ModelSpec` as JSON under metadata key `model`, and free-form training settings.
public struct Checkpoint {
    public static let format = "nn-mlp/1"

    public let network: Network
    /// Metadata besides `format` and `model`: training settings, data set, results.
    public var metadata: [String: String]

    public init(network: Network, metadata: [String: String] = [:]) {
        self.network = network
        self.metadata = metadata
    }

    public func save(to path: String) throws { try AtomicFile.write(try encoded(), to: path) }

    /// The checkpoint as safetensors bytes.
    public func encoded() throws -> [UInt8] {
        var meta = metadata
        meta["format"] = Checkpoint.format
        meta["model"] = String(decoding: try JSONEncoder.sorted.encode(network.spec), as: UTF8.self)
        func tensors(_ layout: [Network.Slot], _ buffer: FloatBuffer) -> [SafeTensors.Tensor] {
            layout.map { slot in
                SafeTensors.Tensor(name: slot.tensor.name, shape: slot.tensor.shape,
                                   values: Array(UnsafeBufferPointer(start: buffer.base + slot.offset, count: slot.tensor.count)))
            }
        }
        let file = SafeTensors(tensors: tensors(network.parameterLayout, network.parameters) + tensors(network.stateLayout, network.state),
                               metadata: meta)
        return try file.encoded()
    }

    public static func load(from path: String) throws -> Checkpoint {
        try decode(try AtomicFile.read(path), source: path)
    }

    /// A checkpoint from its bytes; errors name `source`.
    public static func decode(_ bytes: [UInt8], source path: String) throws -> Checkpoint {
        let file: SafeTensors
        do {
            file = try SafeTensors(decoding: bytes)
        } catch let error as SafeTensorsError {
            throw SafeTensorsError("\(path): \(error.description)")
        }
        guard file.metadata["format"] == format, let model = file.metadata["model"] else {
            throw SafeTensorsError("\(path): not an nn checkpoint (metadata has no format \"\(format)\" and model spec)")
        }
        let spec: ModelSpec
        do {
            spec = try JSONDecoder().decode(ModelSpec.self, from: Data(model.utf8))
            try spec.validate()
        } catch {
            throw SafeTensorsError("\(path): the model spec in the metadata is invalid: \(error)")
        }
        let network = Network(spec: spec)
        func fill(_ layout: [Network.Slot], _ buffer: FloatBuffer) throws {
            for slot in layout {
                guard let t = file[slot.tensor.name] else { throw SafeTensorsError("\(path): tensor \(slot.tensor.name) is missing") }
                guard t.shape == slot.tensor.shape else {
                    throw SafeTensorsError("\(path): tensor \(slot.tensor.name) has shape \(t.shape), the model needs \(slot.tensor.shape)")
                }
                guard t.values.allSatisfy(\.isFinite) else { throw SafeTensorsError("\(path): tensor \(slot.tensor.name) holds NaN or infinite values") }
                t.values.withUnsafeBufferPointer { (buffer.base + slot.offset).update(from: $0.baseAddress!, count: t.values.count) }
            }
        }
        try fill(network.parameterLayout, network.parameters)
        try fill(network.stateLayout, network.state)
        let expected = Set((network.parameterLayout + network.stateLayout).map(\.tensor.name))
        if let extra = file.tensors.first(where: { !expected.contains($0.name) }) {
            throw SafeTensorsError("\(path): tensor \(extra.name) does not belong to a \(spec.description) model")
        }
        var metadata = file.metadata
        metadata["format"] = nil
        metadata["model"] = nil
        return Checkpoint(network: network, metadata: metadata)
    }
}

extension JSONEncoder {
    /// Sorted keys, so the same value always encodes to the same bytes (bit-identical checkpoints).
    public static var sorted: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return e
    }
}
