import Foundation
import Logging
import Metrics
import NNCore
import NNData
import NNProtocol

/// A worker's side of a run: registers, computes the gradients it is asked for on its copy of the data (or, in a
/// federated run, trains the clients it hosts), and stops on shutdown. It exits with an error when refused, or
/// when the coordinator stays silent past the timeout.
public final class Worker {
    public struct Settings: Sendable {
        public var name: String
        /// How long to wait for a welcome before giving up. Once registered, the coordinator's heartbeat interval
        /// and timeout, sent in the welcome, apply.
        public var registrationTimeout: Duration
        /// How long a worker whose coordinator went silent keeps asking to join again (a restarted or resumed
        /// coordinator takes it back) before it gives up.
        public var reconnectTimeout: Duration
        /// Federated clients to host: `clientFirst ..< clientFirst + clientCount`; a nil first lets the coordinator
        /// choose, a count of 0 takes an even share.
        public var clientFirst: Int?
        public var clientCount: Int
        /// Threads that train this worker's clients of a round in parallel.
        public var clientThreads: Int
        /// Once set (SIGTERM), the worker finishes its current task or abandons a long one, tells the
        /// coordinator it leaves, and returns.
        public var stop: StopRequest?
        /// In a ring run: the address of this machine where the other workers reach it (found only then, as
        /// finding it may fail), and the port (0: one the system picks).
        public var ringHost: @Sendable () throws -> String
        public var ringPort: Int
        /// Synchronous SGD: threads that compute each task's gradient, each on a slice of its samples.
        public var batchThreads: Int
        /// In a ring run: how long to spin for a chunk from a member on this host before sleeping. A partner on
        /// a core of its own usually sends within a fraction of a millisecond, sooner than a sleeper wakes; on
        /// shared cores spinning takes the time the partner needs, so it is for pinned workers (`--cpus`).
        public var ringSpin: Duration

        public init(name: String, registrationTimeout: Duration = .seconds(30), reconnectTimeout: Duration = .seconds(60),
                    clientFirst: Int? = nil, clientCount: Int = 0, clientThreads: Int = 1, stop: StopRequest? = nil, ringHost: @escaping @Sendable () throws -> String = { "127.0.0.1" },
                    ringPort: Int = 0, batchThreads: Int = 1, ringSpin: Duration = .zero) {
            self.name = name; self.registrationTimeout = registrationTimeout; self.reconnectTimeout = reconnectTimeout
            self.clientFirst = clientFirst; self.clientCount = clientCount; self.clientThreads = clientThreads; self.stop = stop
            self.ringHost = ringHost; self.ringPort = ringPort; self.batchThreads = batchThreads
            self.ringSpin = ringSpin
        }
    }

    let transport: ClientTransport
    private let data: Dataset
    private let identity: DataIdentity
    public let session: UInt64
    let settings: Settings
    var logger: Logger
    /// Messages from the coordinator that came while a ring step waited for its peers, to handle next.
    var deferred: [[Frame]] = []
    /// Gradients computed and clients trained so far.
    public private(set) var tasksDone = 0 {
        didSet { tasksCounter.increment(by: Int64(tasksDone - oldValue)) }
    }
    /// For a Prometheus endpoint (`--metrics-port`); no-ops without a metrics backend.
    private let tasksCounter = Counter(label: "nn_worker_tasks_total")
    private let registrations = Counter(label: "nn_worker_registrations_total")

    public init(transport: ClientTransport, data: Dataset, session: UInt64, settings: Settings, logger: Logger) {
        self.transport = transport; self.data = data; identity = data.identity
        self.session = session; self.settings = settings; self.logger = logger
    }

    /// The state a run needs once welcomed.
    struct Session {
        let configuration: RunConfiguration
        let timing: ClusterTiming
        let backpropagation: ParallelBackpropagation
        let buffer: BatchBuffer
        /// The hosted clients of a federated run.
        let host: ClientHost?
        /// A ring run's links and replica.
        let ring: RingMember?
    }

    /// How a registration ended: welcomed, or told to stop before the welcome came.
    private enum Registration {
        case welcomed(Session)
        case shutdown(String)
    }

    /// Runs until the coordinator says shutdown; returns its reason.
    @discardableResult
    public func run() throws -> String {
        var session: Session
        switch try registerAndWelcome() {
        case .welcomed(let welcomed): session = welcomed
        case .shutdown(let reason): return reason
        }
        var (heartbeat, timeout) = (session.timing.heartbeat, session.timing.timeout)
        var lastHeard = ContinuousClock.now, lastSent = ContinuousClock.now
        /// With secure aggregation: the round's hosted clients, their trained updates (held until masked) and the global model.
        var masking: (party: MaskingParty, updates: [ClientUpdate], global: [Float])?
        while true {
            if let reason = settings.stop?.reason {
                logger.info("leaving: \(reason)")
                try send(.error(ErrorReport(code: .leaving, text: "\(settings.name) is leaving: \(reason)")))
                // Stay connected until the coordinator has read it (it answers with shutdown), for at most a
                // second: a connection that closed first would look like a lost worker.
                let deadline = ContinuousClock.now + .seconds(1)
                while ContinuousClock.now < deadline, let frames = try transport.receive(timeout: max(deadline - .now, .zero)) {
                    if case .shutdown? = try? WireCodec.decode(frames) { break }
                }
                return "left: \(reason)"
            }
            let received = deferred.isEmpty ? try transport.receive(timeout: heartbeat) : deferred.removeFirst()
            // Heartbeat whenever nothing else went out for an interval, even while the coordinator's own
            // heartbeats keep arriving: each side must hear from the other.
            if ContinuousClock.now - lastSent >= heartbeat {
                try send(.heartbeat(Heartbeat(session: self.session)))
                lastSent = .now
            }
            guard let frames = received else {
                if ContinuousClock.now - lastHeard > timeout {
                    // Either this process was the silent one (stopped, swapped out) and the coordinator has dropped
                    // it, or the coordinator is busy, gone or being restarted: ask to join again until it answers.
                    logger.warning("the coordinator has been silent for \(timeout); registering again")
                    let registration: Registration
                    do {
                        registration = try registerAndWelcome(within: settings.reconnectTimeout)
                    } catch let error as ClusterError where error.description.hasPrefix("no answer") {
                        throw ClusterError("the coordinator has been silent for \(timeout + settings.reconnectTimeout); giving up")
                    }
                    switch registration {
                    case .welcomed(let welcomed): session = welcomed
                    case .shutdown(let reason): return reason
                    }
                    (heartbeat, timeout) = (session.timing.heartbeat, session.timing.timeout)
                    lastHeard = .now
                }
                continue
            }
            lastHeard = .now
            let message: Message
            do {
                message = try WireCodec.decode(frames)
            } catch {
                logger.warning("rejected a malformed message from the coordinator: \(error)")
                try send(.error(ErrorReport(code: .badMessage, text: "\(error)")))
                continue
            }
            switch message {
            case .task(let task) where task.ring != nil:
                do {
                    if try ringStep(task, plan: task.ring!, in: session) { tasksDone += 1 }
                    lastSent = .now
                } catch let error as ClusterError {
                    logger.warning("rejected ring task for round \(task.step + 1): \(error)")
                    try send(.error(ErrorReport(code: .badMessage, text: error.description)))
                }
            case .task(let task):
                do {
                    try send(.gradient(try compute(task, in: session)))
                    lastSent = .now
                    tasksDone += 1
                } catch let error as ClusterError {
                    logger.warning("rejected task for step \(task.step): \(error)")
                    try send(.error(ErrorReport(code: .badMessage, text: error.description)))
                }
            case .train(let request):
                guard let host = session.host else {
                    logger.warning("rejected a train request: this is not a federated run")
                    try send(.error(ErrorReport(code: .badMessage, text: "train request outside a federated run")))
                    continue
                }
                do {
                    var party: MaskingParty?
                    if let spec = host.experiment.secureAggregation {
                        // Keys go out before training, so the roster can form while the clients train.
                        party = MaskingParty(round: request.round, clients: request.clients.map(\.client), spec: spec, seed: host.experiment.seed)
                        try send(.maskingKeys(party!.keys))
                    }
                    let updates = try host.train(request, stop: settings.stop) {
                        // Long rounds: keep the coordinator hearing from this worker.
                        if ContinuousClock.now - lastSent >= heartbeat {
                            try? send(.heartbeat(Heartbeat(session: self.session)))
                            lastSent = .now
                        }
                    }
                    if let party {
                        masking = (party, updates, request.parameters)
                    } else {
                        for update in updates { try send(.update(update)) }
                    }
                    lastSent = .now
                    tasksDone += updates.count
                } catch let error as ClusterError where settings.stop?.reason == nil {
                    logger.warning("rejected train request for round \(request.round + 1): \(error)")
                    try send(.error(ErrorReport(code: .badMessage, text: error.description)))
                }
            case .maskingRoster(let roster):
                try maskingStep(roster.round, masking?.party) { try send(.maskingShares(try $0.shares(for: roster))) }
            case .maskingShares(let shares):
                try maskingStep(shares.round, masking?.party) { party in
                    for update in try party.mask(masking!.updates, global: masking!.global, shares: shares) { try send(.update(update)) }
                }
            case .unmask(let unmask):
                try maskingStep(unmask.round, masking?.party) { try send(.reveal(try $0.reveal(unmask))) }
            case .heartbeat, .welcome:
                continue
            case .shutdown(let shutdown):
                logger.info("coordinator says shutdown: \(shutdown.reason)")
                return shutdown.reason
            case .refuse(let refuse):
                throw ClusterError("the coordinator refused this worker: \(refuse.reason)")
            case .error(let report) where report.code == .notRegistered:
                logger.warning("the coordinator no longer knows this worker (\(report.text)); registering again")
                switch try registerAndWelcome() {
                case .welcomed(let welcomed): session = welcomed
                case .shutdown(let reason): return reason
                }
                (heartbeat, timeout) = (session.timing.heartbeat, session.timing.timeout)
                lastHeard = .now
            case .error(let report):
                logger.warning("coordinator reports: \(report.text)")
            case .hello, .gradient, .update, .maskingKeys, .reveal, .ringChunk, .ringEndpoint:
                logger.warning("rejected a \(message.type) message: only workers send those")
            }
        }
    }

    func send(_ message: Message) throws { try transport.send(WireCodec.encode(message)) }

    /// A step of secure aggregation for the round whose clients `party` holds; a message for another round or one
    /// the clients refuse is reported to the coordinator, and the worker goes on.
    private func maskingStep(_ round: UInt64, _ party: MaskingParty?, _ step: (MaskingParty) throws -> Void) throws {
        do {
            guard let party, party.round == round else {
                throw ClusterError("secure aggregation: a message for round \(round + 1), whose clients this worker does not hold")
            }
            try step(party)
        } catch let error as ClusterError {
            logger.warning("rejected: \(error)")
            try send(.error(ErrorReport(code: .badMessage, text: error.description)))
        }
    }

    /// Says hello (again every second, in case the coordinator was not up yet) until welcomed, refused or told
    /// to stop (a run that ended while this worker was asking to join again).
    private func registerAndWelcome(within limit: Duration? = nil) throws -> Registration {
        let hello = Message.hello(Hello(session: session, name: settings.name, dataFingerprint: identity.fingerprint,
                                        inputWidth: UInt32(identity.inputWidth), classes: UInt32(identity.classes),
                                        clientFirst: settings.clientFirst.map { UInt32($0) } ?? Hello.anyClients,
                                        clientCount: UInt32(settings.clientCount)))
        let wait = limit ?? settings.registrationTimeout
        let deadline = ContinuousClock.now + wait
        var nextHello = ContinuousClock.now
        while ContinuousClock.now < deadline {
            if let reason = settings.stop?.reason { return .shutdown("stopped before joining: \(reason)") }
            if let refusal = transport.refusal() { throw ClusterError(refusal) }
            if ContinuousClock.now >= nextHello {
                do { try send(hello) } catch {
                    throw ClusterError("no connection to the coordinator took this worker's hello (\(error)); is it running and reachable? (one started with --key admits only workers given --key and --server-key)")
                }
                nextHello = .now + .seconds(1)
            }
            guard let frames = try transport.receive(timeout: .milliseconds(100)) else { continue }
            switch try? WireCodec.decode(frames) {
            case .welcome(let welcome):
                do {
                    let session = try start(welcome)
                    if let ring = session.ring { try send(.ringEndpoint(RingEndpoint(endpoint: ring.link.endpoint))) }
                    // Confirms the welcome: the coordinator counts a worker once it hears from it again.
                    try send(.heartbeat(Heartbeat(session: self.session)))
                    registrations.increment()
                    return .welcomed(session)
                } catch {
                    // Tell the coordinator at once rather than leave it waiting for the timeout.
                    try? send(.error(ErrorReport(code: .fatal, text: "\(settings.name) cannot take part: \(error)")))
                    throw error
                }
            case .refuse(let refuse):
                throw ClusterError("the coordinator refused this worker: \(refuse.reason)")
            case .shutdown(let shutdown):
                logger.info("coordinator says shutdown: \(shutdown.reason)")
                return .shutdown(shutdown.reason)
            default:
                continue
            }
        }
        throw ClusterError("no answer from the coordinator within \(wait); is it running and reachable? (one started with --key admits only workers given --key and --server-key)")
    }

    private func start(_ welcome: Welcome) throws -> Session {
        let configuration: RunConfiguration, timing: ClusterTiming
        do {
            configuration = try JSONDecoder().decode(RunConfiguration.self, from: Data(welcome.configuration.utf8))
            try configuration.model.validate()
            timing = try ClusterTiming(heartbeatSeconds: configuration.heartbeatSeconds, timeoutSeconds: configuration.timeoutSeconds)
            guard configuration.globalBatch >= 0 else { throw ClusterError("global batch \(configuration.globalBatch)") }
        } catch {
            throw ClusterError("the coordinator's run configuration is not usable: \(error)")
        }
        guard configuration.model.inputWidth == data.inputWidth, configuration.model.classes == data.classes else {
            throw ClusterError("the model (\(configuration.model.description)) does not fit this worker's data (\(data.inputWidth) inputs, \(data.classes) classes)")
        }
        var host: ClientHost?
        var hosting = ""
        if let experiment = configuration.experiment {
            let first = Int(welcome.clientFirst), count = Int(welcome.clientCount)
            do {
                try experiment.validate()
                host = try ClientHost(experiment: experiment, data: data, clients: first..<(first + count), threads: settings.clientThreads)
            } catch {
                throw ClusterError("cannot host clients \(first)…\(first + count - 1) of experiment \(experiment.name): \(error)")
            }
            hosting = "; hosting clients \(first)…\(first + count - 1)"
        }
        // A step never covers more samples than there are, whatever global batch the configuration names.
        let rows = min(max(configuration.globalBatch, 1), data.sampleCount)
        let backpropagation = ParallelBackpropagation(network: Network(spec: configuration.model), threads: settings.batchThreads,
                                                      seed: configuration.seed)
        let ring = try configuration.ring.map {
            try RingMember($0, network: backpropagation.network, host: try settings.ringHost(), port: settings.ringPort, keys: transport.keys,
                           spin: settings.ringSpin, logger: logger)
        }
        let listening = ring.map { "; ring peers reach it at \($0.link.endpoint)" } ?? ""
        logger.info("registered as worker #\(welcome.workerIndex): \(configuration.mode) training of \(configuration.model.description)\(hosting)\(listening)")
        return Session(configuration: configuration, timing: timing, backpropagation: backpropagation,
                       buffer: BatchBuffer(capacity: rows, inputWidth: data.inputWidth), host: host, ring: ring)
    }

    /// The slice's gradient; a ring task's at the replica and left in the network (the ring sums it from there),
    /// any other's at the parameters it carries, and returned.
    func compute(_ task: GradientTask, in session: Session) throws -> GradientResult {
        let started = ContinuousClock.now
        let network = session.backpropagation.network
        let count = task.samples.count, globalBatch = session.configuration.globalBatch
        guard count >= 1, count <= session.buffer.capacity, Int(task.firstRow) <= globalBatch - count else {
            throw ClusterError("task of \(count) samples from row \(task.firstRow) does not fit the global batch of \(globalBatch)")
        }
        if let bad = task.samples.first(where: { Int($0) >= data.sampleCount }) {
            throw ClusterError("task names sample \(bad); this worker has \(data.sampleCount)")
        }
        if task.ring == nil {
            guard task.parameters.count == network.parameterCount, task.state.count == network.state.count else {
                throw ClusterError("task carries \(task.parameters.count) parameters and \(task.state.count) state values; the model has \(network.parameterCount) and \(network.state.count)")
            }
            network.load(parameters: task.parameters, state: task.state)
        }
        data.gather(task.samples.map { Int($0) }[...], into: session.buffer.x.base, labels: session.buffer.labels)
        let result = session.backpropagation.run(x: session.buffer.x.base, labels: session.buffer.labels, batch: count,
                                                 step: task.step, firstRow: Int(task.firstRow))
        return GradientResult(step: task.step, start: task.start, count: UInt32(count), correct: UInt32(result.correct),
                              lossSum: result.loss * Double(count), computeNanoseconds: UInt64(started.duration(to: .now).seconds * 1e9),
                              gradient: task.ring == nil ? network.gradients.array : [], state: task.ring == nil ? network.state.array : [],
                              compact: task.compact)
    }
}
