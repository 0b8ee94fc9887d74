/// Training cannot go on: the loss or the model stopped being finite.
public struct TrainingError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }

    /// The loss (or the gradient) stopped being finite at `step` (from 1).
    public static func diverged(loss: Double, step: Int) -> TrainingError {
        TrainingError("training diverged: the loss is \(loss) at step \(step); lower the learning rate or clip gradients (--clip)")
    }

    /// The update of `step` (from 1) would have made parameters or optimizer state non-finite, and was refused.
    public static func nonFiniteUpdate(step: Int) -> TrainingError {
        TrainingError("training diverged: the update of step \(step) would make the model non-finite and was refused; lower the learning rate or clip gradients (--clip)")
    }
}
