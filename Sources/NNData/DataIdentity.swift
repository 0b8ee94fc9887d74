/// What every process of a run must agree on about the training data: its fingerprint and shape. A worker
/// sends it in its hello; the coordinator refuses a worker whose identity differs from its own.
public struct DataIdentity: Equatable, Sendable {
    public var fingerprint: [UInt8]
    public var inputWidth: Int
    public var classes: Int

    public init(fingerprint: [UInt8], inputWidth: Int, classes: Int) {
        self.fingerprint = fingerprint; self.inputWidth = inputWidth; self.classes = classes
    }
}

extension Dataset {
    public var identity: DataIdentity { DataIdentity(fingerprint: fingerprint, inputWidth: inputWidth, classes: classes) }
}
