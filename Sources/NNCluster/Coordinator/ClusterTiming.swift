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

    /// Timing from seconds as given on a command line or in a welcome, checked: finite, a heartbeat of at least
    /// a millisecond, a timeout longer than the heartbeat and at most a day, a registration wait of at most a week.
    public init(heartbeatSeconds: Double, timeoutSeconds: Double, registrationSeconds: Double = 60) throws {
        guard (0.001...3600).contains(heartbeatSeconds), timeoutSeconds > heartbeatSeconds, timeoutSeconds <= 86_400,
              registrationSeconds > 0, registrationSeconds <= 604_800 else {
            throw ClusterError("timing out of range: heartbeat \(heartbeatSeconds) s (0.001…3600), timeout \(timeoutSeconds) s (longer than the heartbeat, at most 86400), registration \(registrationSeconds) s (at most 604800)")
        }
        self.init(heartbeat: .seconds(heartbeatSeconds), timeout: .seconds(timeoutSeconds), registration: .seconds(registrationSeconds))
    }
}

/// How many workers a coordinator waits for and keeps, and its timing.
public struct CoordinatorSettings: Sendable {
    public var expectedWorkers: Int
    /// Below this many live workers the run stops with an error.
    public var minimumWorkers: Int
    public var timing: ClusterTiming
    /// Checked after every round: once set, the run ends there as if it were done.
    public var stop: StopRequest?
    /// Federated clients bound to worker keys (from the allowlist): a worker with such a key hosts exactly
    /// those, and no other worker may.
    public var boundClients: [CurvePublicKey: Range<Int>]
    /// Drop a worker whose gradients a robust rule flagged this many steps in a row (nil: only report it).
    public var dropFlaggedAfter: Int?
    /// Synchronous SGD: parameters and gradients travel as bfloat16.
    public var compactVectors: Bool
    /// Synchronous SGD: how the workers' gradients are summed.
    public var topology: Topology
    /// A ring's steps per round: the members step on their own for that long, then report their replica.
    /// Longer rounds spare the coordinator's link and work; a lost member has the ring redo up to that many steps.
    public var ringSteps: Int

    public init(expectedWorkers: Int, minimumWorkers: Int = 1, timing: ClusterTiming = ClusterTiming(), stop: StopRequest? = nil,
                boundClients: [CurvePublicKey: Range<Int>] = [:], dropFlaggedAfter: Int? = nil, compactVectors: Bool = false,
                topology: Topology = .parameterServer, ringSteps: Int = 64) {
        self.expectedWorkers = expectedWorkers; self.minimumWorkers = minimumWorkers; self.timing = timing; self.stop = stop
        self.boundClients = boundClients; self.dropFlaggedAfter = dropFlaggedAfter; self.compactVectors = compactVectors
        self.topology = topology; self.ringSteps = ringSteps
    }
}
