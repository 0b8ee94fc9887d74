import Foundation
import CKernels

/// Element-wise nonlinearities. Softmax is not one of them: it is fused into the loss, where it is stable.
public final class Activation: Layer {
    public enum Kind: String, Codable, CaseIterable, Sendable {
        case relu, sigmoid, tanh
    }

    public let kind: Kind
    public let inputWidth: Int
    public var outputWidth: Int { inputWidth }
    private var output: Workspace
    private var inputGradient: Workspace

    public init(_ kind: Kind, width: Int) {
        self.kind = kind
        inputWidth = width
        output = Workspace(width: width)
        inputGradient = Workspace(width: width)
    }

    public func forward(_ x: UnsafePointer<Float>, batch: Int, pass: Pass) -> UnsafePointer<Float> {
        let y = output.rows(batch)
        let count = batch * inputWidth
        switch kind {
        case .relu: for i in 0..<count { y[i] = max(x[i], 0) }
        case .sigmoid: for i in 0..<count { y[i] = 1 / (1 + expf(-x[i])) }
        case .tanh: for i in 0..<count { y[i] = tanhf(x[i]) }
        }
        return UnsafePointer(y)
    }

    /// Derivatives from the stored output: relu′ = [y > 0], σ′ = y(1 − y), tanh′ = 1 − y².
    public func backward(_ dy: UnsafePointer<Float>, batch: Int, needsInputGradient: Bool, descent: Float?) -> UnsafePointer<Float>? {
        guard needsInputGradient else { return nil }
        let y = output.rows(batch)
        let dx = inputGradient.rows(batch)
        let count = batch * inputWidth
        switch kind {
        case .relu: nn_relu_backward(dx, y, dy, count)
        case .sigmoid: for i in 0..<count { dx[i] = dy[i] * y[i] * (1 - y[i]) }
        case .tanh: for i in 0..<count { dx[i] = dy[i] * (1 - y[i] * y[i]) }
        }
        return UnsafePointer(dx)
    }
}

/// Inverted dropout: in training each unit is kept with probability 1 − rate and scaled by 1/(1 − rate),
/// so inference is the identity.
public final class Dropout: Layer {
    public let rate: Float
    public let inputWidth: Int
    public var outputWidth: Int { inputWidth }
    /// Distinguishes this layer's masks from other dropout layers' at the same step.
    let stream: UInt64
    private var mask: Workspace
    private var output: Workspace
    private var inputGradient: Workspace
    private var masked = false

    public init(rate: Float, width: Int, stream: UInt64) {
        precondition(rate >= 0 && rate < 1)
        self.rate = rate
        inputWidth = width
        self.stream = stream
        mask = Workspace(width: width)
        output = Workspace(width: width)
        inputGradient = Workspace(width: width)
    }

    public func forward(_ x: UnsafePointer<Float>, batch: Int, pass: Pass) -> UnsafePointer<Float> {
        masked = pass.mode == .training && rate > 0
        guard masked else { return x }
        let m = mask.rows(batch), y = output.rows(batch)
        let scale = 1 / (1 - rate)
        for r in 0..<batch {
            var rng = SeededRandom(seed: pass.seed, stream: stream, pass.step, UInt64(pass.firstRow + r))
            for i in (r * inputWidth)..<((r + 1) * inputWidth) {
                m[i] = rng.nextUnitFloat() < rate ? 0 : scale
                y[i] = x[i] * m[i]
            }
        }
        return UnsafePointer(y)
    }

    public func backward(_ dy: UnsafePointer<Float>, batch: Int, needsInputGradient: Bool, descent: Float?) -> UnsafePointer<Float>? {
        guard needsInputGradient else { return nil }
        guard masked else { return dy }
        let m = mask.rows(batch), dx = inputGradient.rows(batch)
        for i in 0..<(batch * inputWidth) { dx[i] = dy[i] * m[i] }
        return UnsafePointer(dx)
    }
}
