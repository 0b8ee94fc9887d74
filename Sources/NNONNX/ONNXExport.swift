import Foundation
import NNCore
import SwiftProtobuf

// GENERATING: onnx.pb.swift is committed. After changing onnx.proto, build swift-protobuf's protoc-gen-swift (same
// version as Package.swift names) and run, in this folder:
//   protoc --plugin=protoc-gen-swift=PATH/protoc-gen-swift --swift_out=. --swift_opt=Visibility=Internal onnx.proto

/// A checkpoint as an ONNX model for inference: input `image` float32 [N, inputWidth] in [0, 1], outputs `logits` and
/// `probabilities` [N, classes], the batch dimension left free.
///
/// Layers map one to one: Dense → Gemm (W is stored [out × in], so transB = 1), BatchNorm → BatchNormalization with
/// the running statistics, activations → Relu/Sigmoid/Tanh, a residual block → its body and Add; dropout is the
/// identity at inference and is left out. `probabilities` is what the loss reads the logits as (`Loss.probabilities`):
/// Softmax, Sigmoid, or the logits themselves. Every model the core builds is made of these layers, so every
/// checkpoint exports. Opset 13 (IR version 7): the oldest that has every operator in the form used here, so the
/// file loads in runtimes years old.
public enum ONNXExport {
    public static let opset: Int64 = 13
    public static let irVersion: Int64 = 7
    public static let inputName = "image"

    /// The model's bytes. Metadata: the checkpoint's own (training settings, test accuracy) plus `model`, the spec.
    public static func encode(_ checkpoint: Checkpoint) throws -> [UInt8] {
        let network = checkpoint.network
        let spec = network.spec
        var graph = GraphBuilder(network: network)
        let logits = graph.add(network.body, input: inputName, prefix: "")
        graph.rename(logits, to: "logits")
        switch spec.loss {
        case .crossEntropy: graph.node("Softmax", ["logits"], "probabilities", attributes: [.int("axis", -1)])
        case .binaryCrossEntropy: graph.node("Sigmoid", ["logits"], "probabilities")
        case .meanSquaredError: graph.node("Identity", ["logits"], "probabilities")
        }

        var model = Onnx_ModelProto()
        model.irVersion = irVersion
        var opset = Onnx_OperatorSetIdProto()
        opset.domain = ""
        opset.version = Self.opset
        model.opsetImport = [opset]
        model.producerName = "nn"
        model.producerVersion = Checkpoint.format
        model.docString = "nn \(spec.description): input \(inputName) [N, \(spec.inputWidth)] in [0, 1]; outputs logits and probabilities [N, \(spec.classes)]"
        var props = checkpoint.metadata
        props["model"] = String(decoding: try JSONEncoder.sorted.encode(spec), as: UTF8.self)
        model.metadataProps = props.keys.sorted().map { key in
            var entry = Onnx_StringStringEntryProto()
            entry.key = key
            entry.value = props[key]!
            return entry
        }
        var g = Onnx_GraphProto()
        g.name = "nn_mlp"
        g.node = graph.nodes
        g.initializer = graph.initializers
        g.input = [valueInfo(inputName, width: spec.inputWidth)]
        g.output = [valueInfo("logits", width: spec.classes), valueInfo("probabilities", width: spec.classes)]
        model.graph = g
        return Array(try model.serializedBytes() as [UInt8])
    }

    /// A float32 tensor [N, width] whose first dimension is named, not fixed.
    private static func valueInfo(_ name: String, width: Int) -> Onnx_ValueInfoProto {
        var batch = Onnx_TensorShapeProto.Dimension()
        batch.dimParam = "N"
        var features = Onnx_TensorShapeProto.Dimension()
        features.dimValue = Int64(width)
        var tensor = Onnx_TypeProto.Tensor()
        tensor.elemType = Int32(Onnx_TensorProto.DataType.float.rawValue)
        tensor.shape.dim = [batch, features]
        var info = Onnx_ValueInfoProto()
        info.name = name
        info.type.tensorType = tensor
        return info
    }
}

/// Nodes and initializers, in the order the layers run.
private struct GraphBuilder {
    enum Attribute {
        case int(String, Int64)
        case float(String, Float)
    }

    var nodes: [Onnx_NodeProto] = []
    var initializers: [Onnx_TensorProto] = []
    private let tensors: [String: (slot: Network.Slot, buffer: FloatBuffer)]

    init(network: Network) {
        var tensors: [String: (Network.Slot, FloatBuffer)] = [:]
        for slot in network.parameterLayout { tensors[slot.tensor.name] = (slot, network.parameters) }
        for slot in network.stateLayout { tensors[slot.tensor.name] = (slot, network.state) }
        self.tensors = tensors
    }

    /// Adds `layer` applied to the value `input`; returns the name of its output. `prefix` is the layer's tensor
    /// name prefix in the checkpoint, which also names its initializers and outputs.
    mutating func add(_ layer: Layer, input: String, prefix: String) -> String {
        switch layer {
        case let sequential as Sequential:
            var value = input
            for (i, child) in sequential.layers.enumerated() { value = add(child, input: value, prefix: "\(prefix)\(i).") }
            return value
        case let residual as Residual:
            let body = add(residual.body, input: input, prefix: "\(prefix)body.")
            return node("Add", [input, body], "\(prefix)sum")
        case is Dense:
            return node("Gemm", [input, initializer(prefix + "weight"), initializer(prefix + "bias")], "\(prefix)dense",
                        attributes: [.int("transB", 1)])
        case let norm as BatchNorm:
            let inputs = [input] + ["weight", "bias", "running_mean", "running_var"].map { initializer(prefix + $0) }
            return node("BatchNormalization", inputs, "\(prefix)norm", attributes: [.float("epsilon", norm.epsilon)])
        case let activation as Activation:
            let op = switch activation.kind { case .relu: "Relu"; case .sigmoid: "Sigmoid"; case .tanh: "Tanh" }
            return node(op, [input], "\(prefix)\(activation.kind.rawValue)")
        case is Dropout:
            return input
        default:
            preconditionFailure("no ONNX form for layer \(type(of: layer))")
        }
    }

    @discardableResult
    mutating func node(_ op: String, _ inputs: [String], _ output: String, attributes: [Attribute] = []) -> String {
        var n = Onnx_NodeProto()
        n.opType = op
        n.name = output
        n.input = inputs
        n.output = [output]
        n.attribute = attributes.map { attribute in
            var a = Onnx_AttributeProto()
            switch attribute {
            case let .int(name, value): a.name = name; a.type = .int; a.i = value
            case let .float(name, value): a.name = name; a.type = .float; a.f = value
            }
            return a
        }
        nodes.append(n)
        return output
    }

    /// Renames the output of the last node (the graph's outputs have fixed names).
    mutating func rename(_ value: String, to name: String) {
        precondition(nodes.last?.output == [value])
        nodes[nodes.count - 1].output = [name]
        nodes[nodes.count - 1].name = name
    }

    /// The checkpoint tensor `name` as an initializer: little-endian float32 bytes, shape as stored.
    mutating func initializer(_ name: String) -> String {
        let (slot, buffer) = tensors[name]!
        var t = Onnx_TensorProto()
        t.name = name
        t.dataType = Int32(Onnx_TensorProto.DataType.float.rawValue)
        t.dims = slot.tensor.shape.map(Int64.init)
        let values = UnsafeBufferPointer(start: buffer.base + slot.offset, count: slot.tensor.count)
        t.rawData = values.map(\.bitPattern.littleEndian).withUnsafeBytes { Data($0) }
        initializers.append(t)
        return name
    }
}
