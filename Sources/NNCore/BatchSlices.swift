/// How a batch is cut among workers or threads: contiguous, near-equal parts in order, the first ones taking
/// one more row when the count does not divide, and no empty part. A worker's share of a step and a thread's
/// share of a worker's batch are cut alike, so the same rows meet the same dropout masks and sums.
public enum BatchSlices {
    public static func ranges(count: Int, parts: Int) -> [Range<Int>] {
        precondition(parts >= 1)
        var start = 0
        return (0..<min(parts, count)).map { i in
            let size = count / parts + (i < count % parts ? 1 : 0)
            defer { start += size }
            return start..<(start + size)
        }
    }
}
