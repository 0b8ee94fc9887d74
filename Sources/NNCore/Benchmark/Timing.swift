/// Seconds per call of `body`, called repeatedly for about `budget` seconds.
public func timePerCall(_ budget: Double, _ body: () throws -> Void) rethrows -> Double {
    let start = ContinuousClock.now
    var calls = 0
    repeat {
        try body()
        calls += 1
    } while start.duration(to: .now).seconds < budget
    return start.duration(to: .now).seconds / Double(calls)
}

/// The median (the mean of the middle two for an even count).
public func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}
