/// y = x + f(x), with f a stack of layers whose output width equals its input width.
public final class Residual: Layer {
    public let body: Sequential
    private var output: Workspace
    private var inputGradient: Workspace

    public init(_ body: Sequential) {
        precondition(body.inputWidth == body.outputWidth, "a residual body must keep the width")
        self.body = body
        output = Workspace(width: body.inputWidth)
        inputGradient = Workspace(width: body.inputWidth)
    }

    public var inputWidth: Int { body.inputWidth }
    public var outputWidth: Int { body.outputWidth }
    public var parameterTensors: [TensorSpec] { body.parameterTensors.map { TensorSpec(name: "body.\($0.name)", shape: $0.shape) } }
    public var stateTensors: [TensorSpec] { body.stateTensors.map { TensorSpec(name: "body.\($0.name)", shape: $0.shape) } }

    public func bind(parameters: UnsafeMutablePointer<Float>, gradients: UnsafeMutablePointer<Float>, state: UnsafeMutablePointer<Float>) {
        body.bind(parameters: parameters, gradients: gradients, state: state)
    }

    public func initialize(_ rng: inout SeededRandom) { body.initialize(&rng) }

    public func forward(_ x: UnsafePointer<Float>, batch: Int, pass: Pass) -> UnsafePointer<Float> {
        let fx = body.forward(x, batch: batch, pass: pass)
        let y = output.rows(batch)
        for i in 0..<(batch * inputWidth) { y[i] = x[i] + fx[i] }
        return UnsafePointer(y)
    }

    public func backward(_ dy: UnsafePointer<Float>, batch: Int, needsInputGradient: Bool, descent: Float?) -> UnsafePointer<Float>? {
        guard let dBody = body.backward(dy, batch: batch, needsInputGradient: needsInputGradient, descent: descent) else { return nil }
        let dx = inputGradient.rows(batch)
        for i in 0..<(batch * inputWidth) { dx[i] = dy[i] + dBody[i] }
        return UnsafePointer(dx)
    }
}
