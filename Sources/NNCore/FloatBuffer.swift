/// A zero-initialised, contiguous float32 allocation with a stable address.
///
/// The model's parameters, gradients and layer workspaces live in these so that BLAS gets raw pointers
/// and the training loop never allocates.
public final class FloatBuffer {
    public let count: Int
    public let base: UnsafeMutablePointer<Float>

    public init(count: Int) {
        self.count = count
        base = .allocate(capacity: max(count, 1))
        base.initialize(repeating: 0, count: max(count, 1))
    }

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
