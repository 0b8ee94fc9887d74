/// Training cannot go on: the loss or the model stopped being finite.
public struct TrainingError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }

    /// The loss (or the gradient) stopped being finite at `step` (from 1).
    public static func diverged(loss: Double, step: Int) -> TrainingError {
        TrainingError("training diverged: the loss is \(loss) at step \(step); lower the learning rate or clip gradients (--clip)")
    }

    /// The optimizer step `step` (from 1) left parameters that are not finite.
    public static func nonFiniteUpdate(step: Int) -> TrainingError {
        TrainingError("training diverged: the update of step \(step) made the parameters non-finite; lower the learning rate or clip gradients (--clip)")
    }
}
