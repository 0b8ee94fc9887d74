/// A zero-initialised, contiguous float32 allocation with a stable address, aligned to a cache line.
///
/// The model's parameters, gradients and layer workspaces live in these so that BLAS gets raw pointers
/// and the training loop never allocates.
public final class FloatBuffer {
    public let count: Int
    public let base: UnsafeMutablePointer<Float>

    public init(count: Int) {
        self.count = count
        base = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * MemoryLayout<Float>.stride, alignment: Self.alignment)
            .bindMemory(to: Float.self, capacity: max(count, 1))
        base.initialize(repeating: 0, count: max(count, 1))
    }

    /// A cache line. AVX-512 kernels load 64 bytes at a time; with malloc's 16-byte alignment every 784-float row
    /// straddled two lines, and the first layer's products at batch 10 ran up to 1.7× slower.
    public static let alignment = 64

    public convenience init(_ values: [Float]) {
        self.init(count: values.count)
        values.withUnsafeBufferPointer { base.update(from: $0.baseAddress!, count: values.count) }
    }

    deinit { base.deallocate() }

    public subscript(i: Int) -> Float {
        get { base[i] }
        set { base[i] = newValue }
    }

    public var array: [Float] { Array(UnsafeBufferPointer(start: base, count: count)) }
}

/// A per-layer workspace of `width` floats per sample that grows to the largest batch it has seen.
struct Workspace {
    let width: Int
    private(set) var buffer = FloatBuffer(count: 0)

    init(width: Int) { self.width = width }

    /// The buffer for `batch` rows; allocates only when the batch exceeds every earlier one.
    mutating func rows(_ batch: Int) -> UnsafeMutablePointer<Float> {
        if buffer.count < batch * width { buffer = FloatBuffer(count: batch * width) }
        return buffer.base
    }
}
