/// How often peers talk and how long silence may last. The coordinator sends heartbeat and timeout to its
/// workers in the welcome, so both sides use the same values.
public struct ClusterTiming: Sendable {
    /// Say something to an idle peer at least this often.
    public var heartbeat: Duration
    /// A peer not heard from for this long (or a task left unanswered for this long) is lost.
    public var timeout: Duration
    /// How long the coordinator waits for its workers to register.
    public var registration: Duration

    public init(heartbeat: Duration = .milliseconds(500), timeout: Duration = .seconds(5), registration: Duration = .seconds(60)) {
        self.heartbeat = heartbeat; self.timeout = timeout; self.registration = registration
    }
}

/// How many workers a coordinator waits for and keeps, and its timing.
public struct CoordinatorSettings: Sendable {
    public var expectedWorkers: Int
    /// Below this many live workers the run stops with an error.
    public var minimumWorkers: Int
    public var timing: ClusterTiming

    public init(expectedWorkers: Int, minimumWorkers: Int = 1, timing: ClusterTiming = ClusterTiming()) {
        self.expectedWorkers = expectedWorkers; self.minimumWorkers = minimumWorkers; self.timing = timing
    }
}
