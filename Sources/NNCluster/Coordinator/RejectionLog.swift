/// How much of each peer's rejected messages the log shows: the first few in full, then a count per interval,
/// so a flooding peer cannot fill the log (a fuzzing peer once wrote megabytes of it).
struct RejectionLog {
    private typealias Limits = RejectionLogLimits

    private struct Entry {
        var logged = 0
        var counted = 0
        var since = ContinuousClock.now
    }
    private var entries: [PeerID: Entry] = [:]

    /// Records a rejection of `peer`'s; true when it is to be logged in full.
    mutating func record(_ peer: PeerID) -> Bool {
        if entries.count >= Limits.peers && entries[peer] == nil { entries.removeAll() }
        var entry = entries[peer, default: Entry()]
        defer { entries[peer] = entry }
        if entry.logged < Limits.inFull {
            entry.logged += 1
            return true
        }
        entry.counted += 1
        return false
    }

    /// The peers with counted rejections whose interval has passed, with the count and the time it covers; their
    /// counts start again.
    mutating func due() -> [(peer: PeerID, count: Int, over: Duration)] {
        let now = ContinuousClock.now
        var out: [(PeerID, Int, Duration)] = []
        for (peer, entry) in entries where entry.counted > 0 && now - entry.since >= Limits.interval {
            out.append((peer, entry.counted, entry.since.duration(to: now)))
            entries[peer] = Entry(logged: entry.logged, counted: 0, since: now)
        }
        return out
    }
}

/// How much of a peer's rejections the coordinator's log shows.
public enum RejectionLogLimits {
    /// Rejections of a peer logged in full; the rest are counted.
    public static let inFull = 5
    /// How often the counted ones are summed up.
    public static let interval = Duration.seconds(10)
    /// Peers remembered at most; beyond that the memory starts again.
    public static let peers = 10_000
}
