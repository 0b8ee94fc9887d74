/// Weight initialisation schemes for dense layers; biases start at zero.
public enum Initializer: String, Codable, CaseIterable, Sendable {
    case xavierUniform = "xavier-uniform"
    case xavierNormal = "xavier-normal"
    case heUniform = "he-uniform"
    case heNormal = "he-normal"

    func sample(_ rng: inout SeededRandom, fanIn: Int, fanOut: Int) -> Float {
        switch self {
        case .xavierUniform:
            let a = Float((6.0 / Double(fanIn + fanOut)).squareRoot())
            return (2 * rng.nextUnitFloat() - 1) * a
        case .xavierNormal:
            return rng.nextGaussian() * Float((2.0 / Double(fanIn + fanOut)).squareRoot())
        case .heUniform:
            let a = Float((6.0 / Double(fanIn)).squareRoot())
            return (2 * rng.nextUnitFloat() - 1) * a
        case .heNormal:
            return rng.nextGaussian() * Float((2.0 / Double(fanIn)).squareRoot())
        }
    }
}

/// y = x · Wᵀ + b with W stored `[out × in]`, the layout PyTorch and NumPy users expect in a checkpoint.
public final class Dense: Layer {
    public let inputWidth: Int
    public let outputWidth: Int
    let initializer: Initializer

    private var w: UnsafeMutablePointer<Float>!, b: UnsafeMutablePointer<Float>!
    private var dw: UnsafeMutablePointer<Float>!, db: UnsafeMutablePointer<Float>!
    private var input: UnsafePointer<Float>?
    private var output: Workspace
    private var inputGradient: Workspace

    public init(_ inputWidth: Int, _ outputWidth: Int, initializer: Initializer) {
        self.inputWidth = inputWidth
        self.outputWidth = outputWidth
        self.initializer = initializer
        output = Workspace(width: outputWidth)
        inputGradient = Workspace(width: inputWidth)
    }

    public var parameterTensors: [TensorSpec] {
        [TensorSpec(name: "weight", shape: [outputWidth, inputWidth]), TensorSpec(name: "bias", shape: [outputWidth])]
    }

    public func bind(parameters: UnsafeMutablePointer<Float>, gradients: UnsafeMutablePointer<Float>, state: UnsafeMutablePointer<Float>) {
        w = parameters; b = parameters + inputWidth * outputWidth
        dw = gradients; db = gradients + inputWidth * outputWidth
    }

    public func initialize(_ rng: inout SeededRandom) {
        for i in 0..<(inputWidth * outputWidth) { w[i] = initializer.sample(&rng, fanIn: inputWidth, fanOut: outputWidth) }
        b.update(repeating: 0, count: outputWidth)
    }

    public func forward(_ x: UnsafePointer<Float>, batch: Int, pass: Pass) -> UnsafePointer<Float> {
        input = x
        let y = output.rows(batch)
        let n = outputWidth
        for r in 0..<batch { (y + r * n).update(from: b, count: n) }
        BLAS.gemmByRows(m: batch, n: n, k: inputWidth, a: x, b: w, beta: 1, c: y)
        return UnsafePointer(y)
    }

    public func backward(_ dy: UnsafePointer<Float>, batch: Int, needsInputGradient: Bool, descent: Float?) -> UnsafePointer<Float>? {
        let n = outputWidth
        // dX = dY · W, before a descent moves W.
        var dx: UnsafeMutablePointer<Float>?
        if needsInputGradient {
            dx = inputGradient.rows(batch)
            BLAS.gemm(m: batch, n: inputWidth, k: n, a: dy, b: w, c: dx!)
        }
        // dW = dYᵀ · X, or with a descent W ← W − rate · dYᵀ · X in the same product.
        if let rate = descent {
            BLAS.gemm(transA: true, m: n, n: inputWidth, k: batch, alpha: -rate, a: dy, b: input!, beta: 1, c: w)
        } else {
            BLAS.gemm(transA: true, m: n, n: inputWidth, k: batch, a: dy, b: input!, c: dw)
        }
        db.update(repeating: 0, count: n)
        for r in 0..<batch {
            let row = dy + r * n
            for j in 0..<n { db[j] += row[j] }
        }
        if let rate = descent { for j in 0..<n { b[j] -= rate * db[j] } }
        return dx.map { UnsafePointer($0) }
    }
}
