/// What a round's (or an epoch's) results add up to, for metrics.
public struct RoundResult: Codable, Sendable {
    public var samples = 0
    public var lossSum = 0.0
    public var correct = 0
    /// The slowest result's compute time in a round; summed over an epoch's rounds.
    public var computeSeconds = 0.0
    /// Every result's compute time, summed: what the round's computing asked of the cores where workers share
    /// them (summed over an epoch's rounds too).
    public var computeSecondsSummed = 0.0
    /// Keys of the results a robust rule flagged as outliers (bounded or outvoted).
    public var flagged: [Int] = []
    /// With differential privacy: the round's clipping and the ε spent so far.
    public var privacy: PrivacyTally?
    /// With secure aggregation: how the round's masked sum came together.
    public var masking: MaskingTally?
    public var meanLoss: Double { samples == 0 ? 0 : lossSum / Double(samples) }
    public var accuracy: Double { samples == 0 ? 0 : Double(correct) / Double(samples) }

    public init(samples: Int = 0, lossSum: Double = 0, correct: Int = 0, computeSeconds: Double = 0) {
        self.samples = samples; self.lossSum = lossSum; self.correct = correct; self.computeSeconds = computeSeconds
    }

    /// The results of one round taken together: counts summed, the slowest compute time and the sum of all.
    public init<Results: Sequence>(round results: Results) where Results.Element: WorkResult {
        for tally in results.map(\.tally) {
            samples += tally.samples; lossSum += tally.lossSum; correct += tally.correct
            computeSeconds = max(computeSeconds, tally.computeSeconds)
            computeSecondsSummed += tally.computeSeconds
        }
    }
}

/// A differentially private round: how many updates the clipping bound changed, their median norm before
/// clipping, the bound used, and ε (at the experiment's δ) after this many rounds.
public struct PrivacyTally: Codable, Sendable {
    public var clipped: Int
    public var updates: Int
    /// Unknown with secure aggregation, where the coordinator sees no single update.
    public var medianNorm: Double?
    public var clip: Double
    public var epsilon: Double
}

/// A round of secure aggregation: the clients that masked, those of them whose masks were taken out of the sum
/// after they dropped, and how many coordinates the clients clamped to the range.
public struct MaskingTally: Codable, Sendable, Equatable {
    public var masked: Int
    public var dropped: Int
    public var clamped: Int
}

/// One round as the coordinator (or the simulation) ran it.
public struct RoundReport: Codable, Sendable {
    /// From 0.
    public var round: Int
    public var result = RoundResult()
    public var seconds = 0.0
    public var communicationSeconds = 0.0
    public var aggregationSeconds = 0.0
    public var bytesSent = 0
    public var bytesReceived = 0
    /// Live workers at the end of the round.
    public var workers = 0
    /// Results asked for (slices, sampled clients), results used, and the keys of those left out.
    public var expected = 0
    public var answered = 0
    public var missed: [Int] = []
    /// Results that arrived after their round had ended.
    public var late = 0
    /// Why nothing was aggregated (fewer results than the strategy's minimum, a masked sum that could not be
    /// unmasked); nil when the round aggregated.
    public var skipped: String?
    /// Messages rejected so far in the run (malformed, unexpected, unusable).
    public var rejectedSoFar = 0

    public init(round: Int) { self.round = round }
}
