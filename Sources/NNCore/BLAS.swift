import CBLAS
import CKernels

/// Row-major single-precision matrix products through OpenBLAS.
public enum BLAS {
    /// C[m×n] = alpha · op(A) · op(B) + beta · C, all row-major and contiguous.
    @inline(__always)
    public static func gemm(
        transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
        beta: Float = 0, c: UnsafeMutablePointer<Float>
    ) {
        cblas_sgemm(
            CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k), alpha,
            a, Int32(transA ? m : k), b, Int32(transB ? k : n), beta, c, Int32(n))
    }

    /// c[m×n] = a[m×k] · b[n×k]ᵀ + beta · c: a dense layer's forward product, a batch of m rows by the weights. For
    /// a batch of a few rows OpenBLAS's packed path spends most of its time packing the weights; its AVX-512 kernels
    /// have unpacked small-matrix ones, taken for small enough products (`smallMatrixColumns`). So with those kernels
    /// the product goes in blocks of output columns that they take. Each value still comes from one product of a
    /// row by a row; the kernel that computes it may differ, so the bits may differ from those of the whole product.
    public static func gemmByRows(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>, beta: Float = 0,
                                  c: UnsafeMutablePointer<Float>) {
        gemmByRows(m: m, n: n, k: k, a: a, b: b, beta: beta, c: c,
                   columns: smallMatrixPaths ? smallMatrixColumns(m: m, n: n, k: k) : nil)
    }

    /// The same product in blocks of `columns` output columns (nil: whole).
    public static func gemmByRows(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>, beta: Float,
                                  c: UnsafeMutablePointer<Float>, columns: Int?) {
        let width = columns ?? n
        for first in stride(from: 0, to: n, by: width) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(min(width, n - first)), Int32(k), 1,
                        a, Int32(k), b + first * k, Int32(k), beta, c + first, Int32(n))
        }
    }

    /// How many output columns a block of `gemmByRows` may have for OpenBLAS's AVX-512 kernels to take their small-
    /// matrix path (as OpenBLAS 0.3.21's sgemm_small_kernel_permit_skylakex.c decides for this product: m·n ≤ 1200,
    /// m·n·k ≤ 100³, k ≥ 32); nil when the whole product takes it already, when the kernels have no such path, or
    /// when blocks would be narrower than 48 columns, which measured slower than the whole product.
    public static func smallMatrixColumns(m: Int, n: Int, k: Int, kernels: String) -> Int? {
        haveSmallMatrixPaths(kernels) ? smallMatrixColumns(m: m, n: n, k: k) : nil
    }

    /// The same, for kernels that have the path.
    private static func smallMatrixColumns(m: Int, n: Int, k: Int) -> Int? {
        guard k >= 32, m > 0 else { return nil }
        let columns = min(1200 / m, 1_000_000 / (m * k))
        guard m * n > 1200 || m * n * k > 1_000_000, columns >= 48, columns < n else { return nil }
        return columns
    }

    /// Whether OpenBLAS's kernels of that name have unpacked small-matrix paths (its AVX-512 ones).
    private static func haveSmallMatrixPaths(_ kernels: String) -> Bool {
        ["skylakex", "cooperlake", "sapphirerapids"].contains(kernels.lowercased())
    }

    /// Those of the kernels in use, found once: the forward product asks every step.
    private static let smallMatrixPaths = haveSmallMatrixPaths(kernels)

    /// Sum of squares of `count` floats, accumulated in double so large vectors keep their precision.
    public static func sumOfSquares(_ x: UnsafePointer<Float>, count: Int) -> Double {
        var s = 0.0
        for i in 0..<count { s += Double(x[i]) * Double(x[i]) }
        return s
    }

    /// The largest magnitude, NaN when a value is NaN or infinite; a vectorised pass.
    public static func maxMagnitude(_ x: UnsafeBufferPointer<Float>) -> Float {
        guard let base = x.baseAddress else { return 0 }
        return nn_max_magnitude(base, x.count)
    }

    /// True when no value is NaN or infinite; a vectorised pass over all of them.
    public static func allFinite(_ x: UnsafeBufferPointer<Float>) -> Bool {
        guard let base = x.baseAddress else { return true }
        return nn_all_finite(base, x.count) != 0
    }

    /// out = Σₖ weights[k] · vectors[k], summed in the order given, each term rounded as in the scalar loop
    /// (no fused multiply-add), so every process and every machine gets the same bits. Synchronous SGD
    /// averages gradients and the FedAvg family averages client models with it.
    public static func weightedSum(_ vectors: [[Float]], weights: [Float], into out: UnsafeMutablePointer<Float>, count: Int) {
        precondition(vectors.count == weights.count && vectors.allSatisfy { $0.count == count })
        out.update(repeating: 0, count: count)
        for (vector, weight) in zip(vectors, weights) {
            vector.withUnsafeBufferPointer { if let x = $0.baseAddress { nn_axpy(out, x, count, weight) } }
        }
    }

    /// The same sum over `count` floats at each pointer (the parts of one batch on several threads).
    public static func weightedSum(_ vectors: [UnsafePointer<Float>], weights: [Float], into out: UnsafeMutablePointer<Float>, count: Int) {
        precondition(vectors.count == weights.count)
        out.update(repeating: 0, count: count)
        for (vector, weight) in zip(vectors, weights) { nn_axpy(out, vector, count, weight) }
    }

    /// y = a·x.
    public static func scale(_ x: UnsafePointer<Float>, by a: Float, into y: UnsafeMutablePointer<Float>, count: Int) { nn_scale(y, x, count, a) }

    /// y = a·x for bytes x (pixels to floats).
    public static func scale(bytes x: UnsafePointer<UInt8>, by a: Float, into y: UnsafeMutablePointer<Float>, count: Int) { nn_scale_bytes(y, x, count, a) }

    /// y = y + x (the same bits as the scalar loop: 1·x is x).
    public static func add(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int) { nn_axpy(y, x, count, 1) }

    /// Limits OpenBLAS to `n` threads; parallelism belongs in processes and the trainer's own threads.
    public static func setThreads(_ n: Int) { openblas_set_num_threads(Int32(n)) }

    /// The kernels OpenBLAS chose when it loaded, by its name for them ("SkylakeX", "Haswell", "Prescott", …).
    public static let kernels = openblas_get_corename().map { String(cString: $0) } ?? "unknown"

    /// OpenBLAS names kernels by the CPU model it recognises; a model newer than the library gets its generic
    /// kernels ("Prescott": SSE3), about a third of the speed on a CPU with AVX-512. In that case, the kernels
    /// (for OPENBLAS_CORETYPE) of the widest vectors the CPU runs; nil when OpenBLAS's choice stands.
    public static var betterKernels: String? {
        let generic: Set<String> = ["prescott", "core2", "penryn", "dunnington", "nehalem", "atom", "katmai", "coppermine", "northwood", "banias"]
        guard generic.contains(kernels.lowercased()) else { return nil }
        switch nn_cpu_vector_level() {
        case 2: return "SkylakeX"
        case 1: return "Haswell"
        default: return nil
        }
    }
}
