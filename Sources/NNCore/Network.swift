/// A network built from a `ModelSpec`, whose parameters, gradients and state are each one flat float32 vector.
///
/// The flat parameter vector is what the distributed trainer sends and averages; its layout (the order of
/// `parameterLayout`) depends only on the spec, so every process agrees on it.
public final class Network {
    /// Where a named tensor lives in the flat parameter or state vector.
    public struct Slot: Equatable, Sendable {
        public var tensor: TensorSpec
        public var offset: Int
    }

    public let spec: ModelSpec
    public let body: Sequential
    public let parameters: FloatBuffer
    public let gradients: FloatBuffer
    public let state: FloatBuffer
    public let parameterLayout: [Slot]
    public let stateLayout: [Slot]

    public convenience init(spec: ModelSpec) {
        self.init(spec: spec, parameters: nil)
    }

    /// A replica that reads `network`'s parameters in place, with gradients, state and workspaces of its own:
    /// one thread's part of a batch, while no one changes the parameters.
    public convenience init(sharingParametersOf network: Network) {
        self.init(spec: network.spec, parameters: network.parameters)
    }

    private init(spec: ModelSpec, parameters shared: FloatBuffer?) {
        self.spec = spec
        body = Network.layers(for: spec)
        parameterLayout = Network.slots(body.parameterTensors)
        stateLayout = Network.slots(body.stateTensors)
        parameters = shared ?? FloatBuffer(count: body.parameterCount)
        gradients = FloatBuffer(count: body.parameterCount)
        state = FloatBuffer(count: body.stateCount)
        body.bind(parameters: parameters.base, gradients: gradients.base, state: state.base)
    }

    /// A network with freshly initialised parameters.
    public convenience init(spec: ModelSpec, seed: UInt64) {
        self.init(spec: spec)
        var rng = SeededRandom(seed: seed, stream: 0x1417)
        body.initialize(&rng)
    }

    public var parameterCount: Int { parameters.count }

    /// Replaces the parameters and the state (batch-norm running statistics) with these values. The caller
    /// checks the lengths first: a message or a file that does not fit is an error to report, not a trap here.
    public func load(parameters values: [Float], state stateValues: [Float]) {
        precondition(values.count == parameters.count && stateValues.count == state.count, "load: vector lengths do not fit the model")
        values.withUnsafeBufferPointer { parameters.base.update(from: $0.baseAddress!, count: $0.count) }
        stateValues.withUnsafeBufferPointer { if let base = $0.baseAddress { state.base.update(from: base, count: $0.count) } }
    }

    /// Runs the network on `batch` rows of `spec.inputWidth` floats; returns `[batch × classes]` logits.
    public func forward(_ x: UnsafePointer<Float>, batch: Int, pass: Pass) -> UnsafePointer<Float> {
        body.forward(x, batch: batch, pass: pass)
    }

    /// Writes the gradients of the loss whose logit gradient is `dLogits` into `gradients`; with a `descent`
    /// rate, applies plain SGD to the parameters instead (`Layer.backward`).
    public func backward(_ dLogits: UnsafePointer<Float>, batch: Int, descent: Float? = nil) {
        _ = body.backward(dLogits, batch: batch, needsInputGradient: false, descent: descent)
    }

    private static func slots(_ tensors: [TensorSpec]) -> [Slot] {
        var offset = 0
        return tensors.map { t in
            defer { offset += t.count }
            return Slot(tensor: t, offset: offset)
        }
    }

    private static func layers(for spec: ModelSpec) -> Sequential {
        let initializer = spec.resolvedInitializer
        var layers: [Layer] = []
        var dropoutStreams: UInt64 = 0
        func hidden(_ from: Int, _ to: Int) {
            layers.append(Dense(from, to, initializer: initializer))
            if spec.batchNorm { layers.append(BatchNorm(width: to)) }
            layers.append(Activation(spec.activation, width: to))
            if spec.dropout > 0 {
                dropoutStreams += 1
                layers.append(Dropout(rate: spec.dropout, width: to, stream: dropoutStreams))
            }
        }
        let hiddenWidths = spec.widths.dropFirst().dropLast()
        var width = spec.inputWidth
        for h in hiddenWidths { hidden(width, h); width = h }
        for _ in 0..<spec.residualBlocks {
            var block: [Layer] = [Dense(width, width, initializer: initializer)]
            if spec.batchNorm { block.append(BatchNorm(width: width)) }
            block.append(Activation(spec.activation, width: width))
            block.append(Dense(width, width, initializer: initializer))
            layers.append(Residual(Sequential(block)))
        }
        layers.append(Dense(width, spec.classes, initializer: initializer))
        return Sequential(layers)
    }
}
