import Foundation

/// Input and output widths of every dense layer, in forward order.
public func denseShapes(_ layer: Layer) -> [(in: Int, out: Int)] {
    switch layer {
    case let dense as Dense: return [(dense.inputWidth, dense.outputWidth)]
    case let sequence as Sequential: return sequence.layers.flatMap(denseShapes)
    case let residual as Residual: return denseShapes(residual.body)
    default: return []
    }
}

/// The products of one training step, run on their own: forward, weight gradient and (all but the first
/// layer) input gradient of each dense layer. `flops` counts 2·m·n·k for each: the step's matrix work.
public final class SameShapeProducts {
    public let shapes: [(in: Int, out: Int)]
    public let batch: Int
    public let flops: Double
    private let x: FloatBuffer, w: FloatBuffer, y: FloatBuffer

    public init(shapes: [(in: Int, out: Int)], batch: Int) {
        self.shapes = shapes
        self.batch = batch
        let widest = shapes.map { max($0.in, $0.out) }.max()!
        x = FloatBuffer(count: batch * widest); y = FloatBuffer(count: batch * widest)
        w = FloatBuffer(count: shapes.map { $0.in * $0.out }.max()!)
        for b in [x, w, y] { for i in 0..<b.count { b[i] = Float(i % 7) * 0.01 } }
        flops = shapes.enumerated().reduce(0) { $0 + Double(2 * batch * $1.element.in * $1.element.out) * ($1.offset == 0 ? 2 : 3) }
    }

    public func run(_ times: Int) {
        for _ in 0..<times {
            for (i, s) in shapes.enumerated() {
                BLAS.gemmByRows(m: batch, n: s.out, k: s.in, a: x.base, b: w.base, c: y.base)
                BLAS.gemm(transA: true, m: s.out, n: s.in, k: batch, a: y.base, b: x.base, c: w.base)
                if i > 0 { BLAS.gemm(m: batch, n: s.in, k: s.out, a: y.base, b: w.base, c: x.base) }
            }
        }
    }
}

/// An n×n×n product, the reference rate of this machine's sgemm.
public final class SquareProduct {
    public let size: Int
    public var flops: Double { 2 * pow(Double(size), 3) }
    private let a: FloatBuffer, b: FloatBuffer, c: FloatBuffer

    public init(size: Int) {
        self.size = size
        a = FloatBuffer(count: size * size); b = FloatBuffer(count: size * size); c = FloatBuffer(count: size * size)
        for i in 0..<(size * size) { a[i] = Float(i % 13) * 0.01; b[i] = Float(i % 11) * 0.01 }
    }

    public func run(_ times: Int) {
        for _ in 0..<times { BLAS.gemm(m: size, n: size, k: size, a: a.base, b: b.base, c: c.base) }
    }
}
