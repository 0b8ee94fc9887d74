/// What a forward pass is for: training uses batch statistics and dropout, inference does not.
public struct Pass: Sendable {
    public enum Mode: Sendable { case training, inference }
    public var mode: Mode
    /// Seeds the dropout masks together with `step` and each row's sample position, so a step's masks are
    /// reproducible (and re-creatable for a finite-difference check) without any layer keeping a random generator
    /// between calls.
    public var seed: UInt64
    public var step: UInt64
    /// Position of the batch's first row within the step's global batch. A worker that computes rows 64…127
    /// of a step draws the same masks for them as a single process computing all rows.
    public var firstRow: Int

    public static let inference = Pass(mode: .inference, seed: 0, step: 0, firstRow: 0)
    public static func training(seed: UInt64, step: UInt64, firstRow: Int = 0) -> Pass {
        Pass(mode: .training, seed: seed, step: step, firstRow: firstRow)
    }
}

/// A named tensor of a layer; `shape` is row-major, as stored in checkpoints.
public struct TensorSpec: Equatable, Sendable {
    public var name: String
    public var shape: [Int]
    public var count: Int { shape.reduce(1, *) }
}

/// A layer of the network. Activations are row-major `[batch × width]`.
///
/// A layer owns its output and input-gradient workspaces; the pointer `forward` returns stays valid until the
/// next `forward`, and `backward` relies on the input of the last `forward` being unchanged.
/// Parameters and gradients are views into the network's flat vectors, handed over by `bind`.
public protocol Layer: AnyObject {
    var inputWidth: Int { get }
    var outputWidth: Int { get }
    /// Trained tensors, in the order they occupy the flat parameter vector.
    var parameterTensors: [TensorSpec] { get }
    /// Non-trained tensors that a checkpoint must keep (batch-norm running statistics).
    var stateTensors: [TensorSpec] { get }
    func bind(parameters: UnsafeMutablePointer<Float>, gradients: UnsafeMutablePointer<Float>, state: UnsafeMutablePointer<Float>)
    func initialize(_ rng: inout SeededRandom)
    func forward(_ x: UnsafePointer<Float>, batch: Int, pass: Pass) -> UnsafePointer<Float>
    /// Writes (not accumulates) the parameter gradients and returns dL/dx when asked for it. With a `descent`
    /// rate it applies plain SGD to the parameters in place instead (p ← p − rate · dL/dp, the gradient's
    /// vector then holds no gradient): a dense layer folds the step into the product that gives its gradient,
    /// sparing a pass over its weights. dL/dx is that of the parameters before the step.
    func backward(_ dy: UnsafePointer<Float>, batch: Int, needsInputGradient: Bool, descent: Float?) -> UnsafePointer<Float>?
}

extension Layer {
    public var parameterTensors: [TensorSpec] { [] }
    public var stateTensors: [TensorSpec] { [] }
    public func bind(parameters: UnsafeMutablePointer<Float>, gradients: UnsafeMutablePointer<Float>, state: UnsafeMutablePointer<Float>) {}
    public func initialize(_ rng: inout SeededRandom) {}
    var parameterCount: Int { parameterTensors.reduce(0) { $0 + $1.count } }
    var stateCount: Int { stateTensors.reduce(0) { $0 + $1.count } }
    public func backward(_ dy: UnsafePointer<Float>, batch: Int, needsInputGradient: Bool) -> UnsafePointer<Float>? {
        backward(dy, batch: batch, needsInputGradient: needsInputGradient, descent: nil)
    }
}

/// Layers applied in order; also the body of a residual block and the whole network.
public final class Sequential: Layer {
    public let layers: [Layer]

    public init(_ layers: [Layer]) {
        precondition(!layers.isEmpty)
        for (a, b) in zip(layers, layers.dropFirst()) { precondition(a.outputWidth == b.inputWidth, "layer widths do not chain") }
        self.layers = layers
    }

    public var inputWidth: Int { layers[0].inputWidth }
    public var outputWidth: Int { layers[layers.count - 1].outputWidth }

    public var parameterTensors: [TensorSpec] { prefixed(\.parameterTensors) }
    public var stateTensors: [TensorSpec] { prefixed(\.stateTensors) }

    private func prefixed(_ tensors: (Layer) -> [TensorSpec]) -> [TensorSpec] {
        layers.enumerated().flatMap { i, layer in
            tensors(layer).map { TensorSpec(name: "\(i).\($0.name)", shape: $0.shape) }
        }
    }

    public func bind(parameters: UnsafeMutablePointer<Float>, gradients: UnsafeMutablePointer<Float>, state: UnsafeMutablePointer<Float>) {
        var p = 0, s = 0
        for layer in layers {
            layer.bind(parameters: parameters + p, gradients: gradients + p, state: state + s)
            p += layer.parameterCount
            s += layer.stateCount
        }
    }

    public func initialize(_ rng: inout SeededRandom) {
        for layer in layers { layer.initialize(&rng) }
    }

    public func forward(_ x: UnsafePointer<Float>, batch: Int, pass: Pass) -> UnsafePointer<Float> {
        var h = x
        for layer in layers { h = layer.forward(h, batch: batch, pass: pass) }
        return h
    }

    public func backward(_ dy: UnsafePointer<Float>, batch: Int, needsInputGradient: Bool, descent: Float?) -> UnsafePointer<Float>? {
        var g: UnsafePointer<Float>? = dy
        for i in layers.indices.reversed() {
            g = layers[i].backward(g!, batch: batch, needsInputGradient: i > 0 || needsInputGradient, descent: descent)
        }
        return g
    }
}
