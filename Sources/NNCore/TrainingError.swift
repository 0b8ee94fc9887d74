/// Training cannot go on: the loss or the model stopped being finite.
public struct TrainingError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
