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
    private var ignoredLogged = ContinuousClock.now

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

    /// Whether the summary of ignored peers' messages is due (once an interval).
    mutating func ignoredDue() -> Bool {
        guard ContinuousClock.now - ignoredLogged >= Limits.interval else { return false }
        ignoredLogged = .now
        return true
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

/// What one peer, or a crowd of them, can make a coordinator hold or do.
public enum AdmissionLimits {
    /// New hellos answered per second, in bursts of as many; the rest wait (their senders repeat them).
    public static let hellosPerSecond = 100
    /// Peers welcomed but not yet heard from again at once; further hellos wait until some confirm or time out.
    public static let unconfirmedPeers = 64
    /// Rejected messages after which a peer is ignored for the rest of the run: its messages are dropped unread,
    /// without an answer (a registered worker is dropped and banned first).
    public static let badMessages = 50
    /// Ignored peers remembered at most.
    public static let ignoredPeers = 10_000
    /// Messages queued per peer in each direction in the socket; with the largest message size this bounds the
    /// bytes a peer can make the coordinator hold.
    public static let queuedMessages: Int32 = 16
}
