/// Reusable batch buffers, so that neither training nor evaluation allocates per batch.
public final class BatchBuffer {
    public let x: FloatBuffer
    public let labels: UnsafeMutablePointer<Int32>
    public let capacity: Int

    public init(capacity: Int, inputWidth: Int) {
        self.capacity = capacity
        x = FloatBuffer(count: capacity * inputWidth)
        labels = .allocate(capacity: capacity)
        labels.initialize(repeating: 0, count: capacity)
    }

    deinit { labels.deallocate() }
}
