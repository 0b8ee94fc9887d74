/// Labelled samples that can be gathered into a float batch; implemented by the data layer.
public protocol BatchSource {
    var sampleCount: Int { get }
    var inputWidth: Int { get }
    /// Writes the samples at `indices` as rows of `x` (`indices.count × inputWidth`) and their labels.
    func gather(_ indices: ArraySlice<Int>, into x: UnsafeMutablePointer<Float>, labels: UnsafeMutablePointer<Int32>)
}
