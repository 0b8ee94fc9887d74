import Logging
import NNCore
import NNData
import NNProtocol

/// Runs a strategy's rounds over a transport: registers workers (and gives each a range of federated clients
/// to host), hands out each round's work, collects the results, notices lost workers (heartbeats) and hands
/// their work to the others or leaves it out, ends federated rounds at their deadline, and rejects bad
/// messages without stopping.
public final class Coordinator<S: Strategy> {
    final class WorkerRecord {
        let peer: PeerID
        let index: Int
        let name: String
        let session: UInt64
        let clients: Range<Int>
        var lastHeard: ContinuousClock.Instant
        var lastSent: ContinuousClock.Instant
        /// Heard from since its welcome: it works, and counts as a worker (a peer that only says hello does not).
        var ready = false
        /// Steps in a row whose work of this worker another worker had to answer (it was mute, slow or unusable).
        var leftToOthers = 0
        /// Steps in a row in which a robust rule flagged this worker's gradient.
        var flaggedInARow = 0
        /// In a ring run: where it takes chunks (it says so before it counts as registered).
        var ringEndpoint: String?
        init(peer: PeerID, index: Int, name: String, session: UInt64, clients: Range<Int>, now: ContinuousClock.Instant) {
            self.peer = peer; self.index = index; self.name = name; self.session = session; self.clients = clients
            lastHeard = now; lastSent = now
        }
        var label: String { "\(name) (\(peer))" }
    }

    private let transport: ServerTransport
    public let strategy: S
    private let data: DataIdentity
    public let settings: CoordinatorSettings
    private var timing: ClusterTiming { settings.timing }
    private var logger: Logger
    /// The welcome's configuration, and the optional features a worker must offer to be admitted.
    private let configuration: String
    private let required: Capabilities
    /// The run is a ring: workers give an endpoint for their peers.
    private let ring: Bool
    private var workers: [PeerID: WorkerRecord] = [:]
    private var nextIndex = 0
    private var bytesSent = 0, bytesReceived = 0
    /// Messages rejected so far (malformed, unexpected, from unknown peers).
    public private(set) var rejected = 0
    private var rejectionLog = RejectionLog()
    private let metrics = CoordinatorMetrics()
    /// Peers dropped for leaving work unanswered: how often, and until when a new hello of theirs waits.
    private var penalties: [PeerID: (failures: Int, until: ContinuousClock.Instant)] = [:]
    /// Rejected messages per peer, and the peers ignored for sending too many (see `AdmissionLimits`).
    private var badMessages: [PeerID: Int] = [:]
    private var ignored: Set<PeerID> = []
    private var ignoredSinceLog = 0
    /// Work of the rounds after the current one, sent before they started (`Strategy.configureAhead`), and when.
    private var sentAhead: [Int: (assignments: [Assignment<S.Work>], at: ContinuousClock.Instant)] = [:]
    /// Results of rounds sent ahead that came before their round started, with who sent them.
    private var early: [Int: [(peer: PeerID, message: Message, result: S.Result)]] = [:]
    /// Rounds whose work may be out before the round before them is aggregated: a ring's rounds are long, so
    /// one is enough for a worker to find its next task waiting; the results held early stay bounded.
    static var roundsAhead: Int { 1 }
    /// The longest a round has taken so far, of those that lost no worker: a ring's round of many steps may take
    /// longer than the timeout.
    private var longestRound: Duration = .zero
    /// Hello tokens: refilled at `AdmissionLimits.hellosPerSecond`.
    private var helloTokens = Double(AdmissionLimits.hellosPerSecond)
    private var tokensRefilled = ContinuousClock.now
    /// Drops for unanswered work after which a peer is refused for the rest of the run.
    static var banAfter: Int { 3 }
    /// Steps in a row a worker may leave its work to others before it is dropped.
    static var takeoversAllowed: Int { 3 }

    public init(transport: ServerTransport, strategy: S, data: DataIdentity, settings: CoordinatorSettings, logger: Logger) {
        self.transport = transport; self.strategy = strategy; self.data = data; self.settings = settings; self.logger = logger
        let job = strategy.job
        configuration = RunConfiguration(job: job, model: strategy.network.spec, timing: settings.timing).json
        ring = job.ring != nil
        required = .required(model: strategy.network.spec, experiment: job.experiment, compactVectors: job.compactVectors, ring: ring)
    }

    private var live: [WorkerRecord] { workers.values.sorted { $0.index < $1.index } }
    /// The live workers that have shown they work; only these get work and count towards `expectedWorkers`.
    private var ready: [WorkerRecord] { live.filter(\.ready) }

    /// Runs the strategy's rounds from `first` (a resumed run's next round) while `onRound` (evaluate, log,
    /// checkpoint there) returns true.
    public func run(from first: Int = 0, onRound: (RoundReport) throws -> Bool) throws {
        try register()
        let unhosted = strategy.clientCount - ready.reduce(0) { $0 + $1.clients.count }
        if unhosted > 0 {
            logger.warning("\(unhosted) of the \(strategy.clientCount) clients have no worker to host them; rounds sample among the others")
        }
        var previousRejected = 0
        for round in first..<max(first, strategy.rounds) {
            var report = RoundReport(round: round)
            let start = ContinuousClock.now
            let sentBefore = bytesSent, receivedBefore = bytesReceived
            let membersBefore = ready.map(\.peer)
            let (results, answeredBy, masked) = try collect(round: round, into: &report)
            // A round that lost a worker took the timeout to find it out: not a measure of the work.
            if ready.map(\.peer) == membersBefore { longestRound = max(longestRound, start.duration(to: .now)) }
            let aggregationStart = ContinuousClock.now
            if report.skipped == nil {
                if let masked {
                    report.result = try strategy.aggregate(round: round, results: results, failures: report.missed, sum: masked.sum, from: masked.server)
                } else {
                    report.result = try strategy.aggregate(round: round, results: results, failures: report.missed)
                }
                judge(flagged: report.result.flagged, answeredBy: answeredBy, round: round)
            }
            report.aggregationSeconds = aggregationStart.duration(to: .now).seconds
            report.rejectedSoFar = rejected
            report.communicationSeconds = max(start.duration(to: aggregationStart).seconds - report.result.computeSeconds, 0)
            report.seconds = start.duration(to: .now).seconds
            report.bytesSent = bytesSent - sentBefore
            report.bytesReceived = bytesReceived - receivedBefore
            report.workers = ready.count
            metrics.record(report, newlyRejected: rejected - previousRejected)
            previousRejected = rejected
            guard try onRound(report) else { break }
            if let reason = settings.stop?.reason {
                logger.warning("stopping after round \(round + 1) of \(strategy.rounds): \(reason)")
                shutdown(reason: "the coordinator was stopped: \(reason)")
                return
            }
        }
        shutdown(reason: "training finished")
    }

    /// Tells every worker to stop, and the peers backing off after a drop, which are waiting to join again.
    /// Also for a run to call after a failure.
    public func shutdown(reason: String) {
        for worker in live { send(.shutdown(Shutdown(reason: reason)), to: worker) }
        for (peer, penalty) in penalties where workers[peer] == nil && penalty.failures < Self.banAfter {
            sendRaw(.shutdown(Shutdown(reason: reason)), to: peer)
        }
    }

    // MARK: Registration

    private func register() throws {
        let deadline = ContinuousClock.now + timing.registration
        logger.info("waiting for \(settings.expectedWorkers) worker\(settings.expectedWorkers == 1 ? "" : "s")")
        while ready.count < settings.expectedWorkers {
            guard ContinuousClock.now < deadline else {
                throw ClusterError("only \(ready.count) of \(settings.expectedWorkers) workers registered within \(timing.registration)")
            }
            if let (peer, frames) = try transport.receive(timeout: timing.heartbeat) {
                if let message = handle(peer, frames) {
                    reject("\(message.type) from \(label(peer)) before training started", from: peer, reply: false)
                }
            }
            expireAndHeartbeat()
        }
    }

    private func welcome(_ hello: Hello, from peer: PeerID) {
        if let existing = workers[peer], existing.session == hello.session {
            // A repeated hello (the worker resends until welcomed): answer it again.
            send(welcomeMessage(existing), to: existing)
            return
        }
        // A crowd of new peers is taken at a bounded pace: the rest repeat their hellos.
        let now = ContinuousClock.now
        helloTokens = min(helloTokens + tokensRefilled.duration(to: now).seconds * Double(AdmissionLimits.hellosPerSecond), Double(AdmissionLimits.hellosPerSecond))
        tokensRefilled = now
        guard helloTokens >= 1, live.count(where: { !$0.ready }) < AdmissionLimits.unconfirmedPeers else { return }
        helloTokens -= 1
        if let penalty = penalties[peer] {
            if penalty.failures >= Self.banAfter {
                sendRaw(.refuse(Refuse(reason: "refused for the rest of this run: its work went unanswered \(penalty.failures) times")), to: peer)
                return
            }
            // Backing off: the answer waits, and the peer repeats its hello meanwhile.
            if ContinuousClock.now < penalty.until { return }
        }
        let clients: Range<Int>
        do {
            if let reason = refusal(hello) { throw ClusterError(reason) }
            guard let allocated = try allocateClients(hello, key: peer.key) else {
                // Its clients are promised to a welcomed worker that has not confirmed yet: the answer waits
                // for that one to register or to be dropped (the worker repeats its hello meanwhile).
                return
            }
            clients = allocated
        } catch {
            logger.warning("refused worker \(hello.name) (\(peer)): \(error)")
            sendRaw(.refuse(Refuse(reason: "\(error)")), to: peer)
            return
        }
        let record = WorkerRecord(peer: peer, index: nextIndex, name: hello.name, session: hello.session, clients: clients, now: .now)
        nextIndex += 1
        workers[peer] = record
        send(welcomeMessage(record), to: record)
    }

    /// A welcomed worker has spoken again: it counts from now on, unless another worker took its clients meanwhile.
    private func confirm(_ worker: WorkerRecord) {
        if ring, worker.ringEndpoint == nil {
            drop(worker, because: "it gave no ring endpoint")
            sendRaw(.refuse(Refuse(reason: "this run is a ring, and the worker gave no endpoint for its peers")), to: worker.peer)
            return
        }
        if let clash = ready.first(where: { $0.clients.overlaps(worker.clients) }) {
            drop(worker, because: "\(clash.label) hosts its clients now")
            sendRaw(.refuse(Refuse(reason: "its clients are hosted by \(clash.label) now")), to: worker.peer)
            return
        }
        worker.ready = true
        let hosting = worker.clients.isEmpty ? "" : ", hosting clients \(worker.clients.lowerBound)…\(worker.clients.upperBound - 1)"
        logger.info("worker \(worker.label) registered as #\(worker.index)\(hosting); \(ready.count) live")
    }

    private func welcomeMessage(_ worker: WorkerRecord) -> Message {
        .welcome(Welcome(workerIndex: UInt32(worker.index), configuration: configuration,
                         clientFirst: UInt32(worker.clients.lowerBound), clientCount: UInt32(worker.clients.count)))
    }

    /// The clients a new worker hosts: the range it asks for if free, else the first free block of the size it
    /// asks for (default: an even share of the clients among the expected workers). Throws when a registered
    /// worker hosts them; nil when only a welcomed worker that has not confirmed yet does (it may never, and must
    /// not keep a real worker out, so the answer waits).
    private func allocateClients(_ hello: Hello, key: CurvePublicKey?) throws -> Range<Int>? {
        let total = strategy.clientCount
        guard total > 0 else { return 0..<0 }
        // Clients bound to other keys count as hosted: no other worker may take them.
        let bound = key.flatMap { settings.boundClients[$0] }
        let reserved = settings.boundClients.filter { $0.key != key }.map { ($0.value, "the key \($0.key)") }
        let taken = ready.map { ($0.clients, $0.label) }.filter { !$0.0.isEmpty } + reserved
        let tentative = live.filter { !$0.ready }.map(\.clients)
        if hello.clientFirst != Hello.anyClients || bound != nil {
            let first = Int(hello.clientFirst), count = Int(hello.clientCount)
            if let bound, hello.clientFirst != Hello.anyClients, bound != first..<(first + count) {
                throw ClusterError("it asks for clients \(first)…\(first + count - 1), but its key hosts \(bound.lowerBound)…\(bound.upperBound - 1)")
            }
            guard let wanted = bound ?? (count >= 1 && first + count <= total ? first..<(first + count) : nil) else {
                throw ClusterError("it asks for clients \(first)…\(first + count - 1), outside the experiment's 0…\(total - 1)")
            }
            guard wanted.upperBound <= total else {
                throw ClusterError("its key hosts clients \(wanted.lowerBound)…\(wanted.upperBound - 1), outside the experiment's 0…\(total - 1)")
            }
            if let clash = taken.first(where: { $0.0.overlaps(wanted) }) {
                throw ClusterError("it asks for clients \(wanted.lowerBound)…\(wanted.upperBound - 1), but \(clash.1) hosts \(clash.0.lowerBound)…\(clash.0.upperBound - 1)")
            }
            return tentative.contains { $0.overlaps(wanted) } ? nil : wanted
        }
        let share = hello.clientCount > 0 ? Int(hello.clientCount) : Participant.evenShare(clients: total, workers: settings.expectedWorkers)
        func block(avoiding ranges: [Range<Int>]) -> Range<Int>? {
            guard let free = (0..<total).first(where: { c in !ranges.contains { $0.contains(c) } }) else { return nil }
            let next = ranges.map(\.lowerBound).filter { $0 > free }.min() ?? total
            return free..<min(free + share, next)
        }
        guard block(avoiding: taken.map(\.0)) != nil else {
            throw ClusterError("every one of the \(total) clients is already hosted by another worker")
        }
        return block(avoiding: taken.map(\.0) + tentative)
    }

    private func refusal(_ hello: Hello) -> String? {
        if hello.dataFingerprint != data.fingerprint {
            return "its data differs from the coordinator's (the fingerprints differ): use the same data set and files"
        }
        if Int(hello.inputWidth) != data.inputWidth || Int(hello.classes) != data.classes {
            return "its data has \(hello.inputWidth) inputs and \(hello.classes) classes, the model needs \(data.inputWidth) and \(data.classes)"
        }
        let missing = required.subtracting(hello.capabilities)
        if !missing.isEmpty {
            return "the run needs \(missing.names.joined(separator: ", ")), which this worker does not offer"
        }
        return nil
    }

    // MARK: Rounds

    /// Sends the round's work and waits for its results. Work of a worker that is lost (silent, unreachable,
    /// failed) or that sent something unusable goes to the others if the strategy redoes it, else it is left
    /// out. Without a deadline every result is needed, and a piece left unanswered for the worker timeout
    /// counts as a lost worker (a peer that keeps talking but never delivers must not stall the run); with one,
    /// the round ends at the deadline at the latest, and a round with fewer results than the strategy's minimum
    /// is skipped: the global model stays as it was. With secure aggregation the round's messages relay the
    /// clients' keys and shares meanwhile, and once the masked results are in, their sum is unmasked.
    private func collect(round: Int, into report: inout RoundReport) throws
        -> (results: [S.Result], answeredBy: [Int: PeerID], masked: (sum: [UInt32], server: MaskingServer)?) {
        var pending: [Int: Assignment<S.Work>] = [:]
        var results: [Int: S.Result] = [:]
        var answeredBy: [Int: PeerID] = [:]
        // How many keys each result answers (more than one for a host's aggregate).
        var answers: [Int: Int] = [:]
        var nonFinite: Set<PeerID> = [], nonFiniteCount = 0
        var sentAt: [Int: ContinuousClock.Instant] = [:]
        // Speculative re-execution (synchronous SGD): work still out when the others have answered goes to an idle
        // worker too, and the first valid answer wins, so one slow or mute peer cannot hold up a step.
        var helpers: [Int: PeerID] = [:]
        var firstAnswer: Duration?
        var tookOver: Set<PeerID> = [], answeredOwn: Set<PeerID> = []
        let start = ContinuousClock.now
        let speculate = strategy.deadline == nil && !strategy.restartsRoundOnLoss
        func dispatch(_ assignments: [Assignment<S.Work>]) {
            for a in assignments {
                for key in a.keys { pending[key] = a; sentAt[key] = .now }
                if let worker = workers[a.worker] { send(a.work.message, to: worker) }
            }
        }
        func redo(_ keys: [Int], of assignment: Assignment<S.Work>, among participants: [Participant]) {
            if strategy.restartsRoundOnLoss {
                // The round's results need each other: it starts again, with the workers still here.
                logger.info("round \(round + 1) starts again with \(self.participants.count) worker\(self.participants.count == 1 ? "" : "s")")
                pending.removeAll(); helpers.removeAll(); results.removeAll(); answeredBy.removeAll(); answers.removeAll()
                sentAhead.removeAll(); early.removeAll()
                if !self.participants.isEmpty {
                    dispatch(strategy.configure(round: round, participants: self.participants))
                    sendAhead()
                }
                return
            }
            for key in keys { pending[key] = nil; helpers[key] = nil }
            let again = strategy.reassign(assignment, keys: keys, round: round, participants: participants)
            if again.isEmpty {
                report.missed += keys
                masking?.lost(keys)
            } else {
                dispatch(again)
            }
        }
        /// Sends the work of the next rounds that can go before this one is aggregated, up to `roundsAhead`.
        func sendAhead() {
            var next = (sentAhead.keys.max() ?? round) + 1
            while next <= round + Self.roundsAhead, !ready.isEmpty, let ahead = strategy.configureAhead(round: next, participants: participants) {
                for a in ahead { if let worker = workers[a.worker] { send(a.work.message, to: worker) } }
                sentAhead[next] = (ahead, .now)
                next += 1
            }
        }
        try requireWorkers()
        let ahead = sentAhead.removeValue(forKey: round)
        let assignments = ahead?.assignments ?? strategy.configure(round: round, participants: participants)
        report.expected = assignments.reduce(0) { $0 + $1.keys.count }
        let masking = strategy.maskingServer(round: round, clients: assignments.flatMap(\.keys))
        let hosted = Dictionary(assignments.map { ($0.worker, Set($0.keys.map { UInt32($0) })) }, uniquingKeysWith: { $0.union($1) })
        var maskingFailure: String?
        /// Takes a secure-aggregation message of a worker; false for any other message.
        func takeMasking(_ message: Message, from peer: PeerID) -> Bool {
            let messageRound: UInt64
            switch message {
            case .maskingKeys(let m): messageRound = m.round
            case .maskingShares(let m): messageRound = m.round
            case .reveal(let m): messageRound = m.round
            default: return false
            }
            if messageRound < UInt64(round) {
                logger.debug("discarded \(message.type) for round \(messageRound + 1) from \(label(peer)), which came after its round ended")
                return true
            }
            do {
                guard let masking else { throw ClusterError("this run does not use secure aggregation") }
                guard messageRound == UInt64(round) else { throw ClusterError("it is for round \(messageRound + 1), not \(round + 1)") }
                let clients = hosted[peer] ?? []
                switch message {
                case .maskingKeys(let m): try masking.add(m, from: clients)
                case .maskingShares(let m): try masking.add(m, from: clients)
                case .reveal(let m): try masking.add(m, from: clients)
                default: break
                }
            } catch {
                reject("\(message.type) from \(label(peer)): \(error)", from: peer, reply: true)
            }
            return true
        }
        /// Sends the roster once every client still there sent keys, and relays the shares once they all sent theirs.
        func advanceMasking() {
            guard let masking, maskingFailure == nil else { return }
            do {
                if masking.roster == nil, masking.keysComplete {
                    let roster = try masking.makeRoster()
                    let members = Set(roster.keys.map(\.client))
                    for (peer, clients) in hosted where !clients.isDisjoint(with: members) {
                        if let worker = workers[peer] { send(.maskingRoster(roster), to: worker) }
                    }
                }
                if masking.roster != nil, masking.maskers.isEmpty, masking.sharesComplete {
                    let relayed = try masking.relay()
                    for (peer, clients) in hosted {
                        let shares = clients.sorted().flatMap { relayed[$0] ?? [] }
                        if !shares.isEmpty, let worker = workers[peer] { send(.maskingShares(MaskingShares(round: UInt64(round), shares: shares)), to: worker) }
                    }
                    // Clients whose shares did not come cannot mask: no result is coming from them.
                    let out = pending.keys.filter { !masking.maskers.contains(UInt32($0)) }.sorted()
                    for key in out { pending[key] = nil }
                    report.missed += out
                }
            } catch {
                maskingFailure = "\(error)"
            }
        }
        if let ahead {
            for a in assignments { for key in a.keys { pending[key] = a; sentAt[key] = ahead.at } }
        } else {
            dispatch(assignments)
        }
        sendAhead()
        /// Takes a message of a peer in the round: a result is checked and kept, or kept for its round if that
        /// round's work went ahead, or rejected.
        func take(_ message: Message, from peer: PeerID) throws {
            guard !takeMasking(message, from: peer) else { return }
            let result = S.Result(message)
            if let result, !strategy.isCurrent(result) {
                logger.debug("discarded a \(message.type) from \(label(peer)) for work since replaced")
            } else if let result, result.round == UInt64(round), let assignment = pending[result.key],
               assignment.worker == peer || helpers[result.key] == peer, masking.map({ $0.maskers.contains(UInt32(result.key)) }) ?? true {
                do {
                    try strategy.check(result, against: assignment)
                    let keys = strategy.keys(answeredBy: result, of: assignment)
                    for key in keys { pending[key] = nil; helpers[key] = nil }
                    results[result.key] = result
                    answers[result.key] = keys.count
                    answeredBy[result.key] = peer
                    firstAnswer = firstAnswer ?? start.duration(to: .now)
                    if peer == assignment.worker { answeredOwn.insert(peer) } else { tookOver.insert(assignment.worker) }
                } catch where peer != assignment.worker {
                    // A helper's answer failed; the work is still with its worker.
                    helpers[result.key] = nil
                    reject("\(message.type) from \(label(peer)) for round \(round + 1): \(error)", from: peer, reply: true)
                } catch {
                    reject("\(message.type) from \(label(peer)) for round \(round + 1): \(error)", from: peer, reply: true)
                    // Work that is redone and comes back non-finite from two workers (or twice from the only
                    // one) is the model diverging, not a bad peer: stop, as one process would.
                    if strategy.deadline == nil, error is NonFiniteResult {
                        nonFinite.insert(peer)
                        nonFiniteCount += 1
                        if nonFinite.count >= 2 || (nonFiniteCount >= 2 && ready.count == 1) {
                            throw TrainingError.diverged(loss: result.tally.meanLoss, step: round + 1)
                        }
                    }
                    // The worker is alive but sent something unusable: another worker may redo it, and in
                    // synchronous SGD it counts as work this worker left to others.
                    if strategy.deadline == nil { tookOver.insert(peer) }
                    let others = participants.filter { $0.peer != peer }
                    redo(strategy.keys(answeredBy: result, of: assignment), of: assignment, among: others.isEmpty ? participants : [others[0]])
                }
            } else if let result, result.round == UInt64(round), results[result.key] != nil {
                // The slower of two answers to work that was also given to another worker: slow, not mute.
                logger.debug("discarded a second answer to slice \(result.key) from \(label(peer))")
                workers[peer]?.leftToOthers = 0
            } else if let result, result.round < UInt64(round) {
                report.late += 1
                workers[peer]?.leftToOthers = 0
                logger.info("discarded a result for round \(result.round + 1) from \(workers[peer]?.label ?? "\(peer)"), which came after its round ended")
            } else if let result, let later = Int(exactly: result.round), let ahead = sentAhead[later],
                      ahead.assignments.contains(where: { $0.worker == peer && $0.keys.contains(result.key) }) {
                if !(early[later] ?? []).contains(where: { $0.result.key == result.key }) { early[later, default: []].append((peer, message, result)) }
            } else {
                // A result for another step or slice than the ones this worker holds: tell it, rather than wait for the timeout.
                reject("\(message.type) from \(label(peer)) answers no work it holds in round \(round + 1)", from: peer, reply: true)
            }
        }
        for kept in early.removeValue(forKey: round) ?? [] { try take(kept.message, from: kept.peer) }
        while !pending.isEmpty && maskingFailure == nil {
            var wait = timing.heartbeat
            if speculate, let next = pending.keys.filter({ helpers[$0] == nil }).map({ sentAt[$0]! + speculationDelay(firstAnswer) }).min() {
                wait = min(wait, max(ContinuousClock.now.duration(to: next), .zero))
            }
            if let deadline = strategy.deadline {
                let left = deadline - start.duration(to: .now)
                if left <= .zero {
                    let keys = pending.keys.sorted()
                    logger.warning("round \(round + 1): deadline of \(deadline) passed; left out \(keys.count) result\(keys.count == 1 ? "" : "s") (\(keys.map(String.init).joined(separator: ", ")))")
                    report.missed += keys
                    break
                }
                wait = min(wait, left)
            }
            if let (peer, frames) = try transport.receive(timeout: wait), let message = handle(peer, frames) {
                try take(message, from: peer)
            }
            expireAndHeartbeat()
            if strategy.deadline == nil {
                // A ring's results wait for each other: a lost member is found by its silence (the heartbeat
                // timeout) and the round restarts; only then is the wait itself a fault (a ring link that fails
                // while the control link lives), and every member still owing a result is dropped. A ring's
                // round is allowed three times the longest one yet besides, or before any round was timed the
                // timeout for each of its steps, as a parameter server allows a step.
                let ringAllowance = longestRound > .zero ? longestRound * 3 : timing.timeout * strategy.stepCount(ofRound: round)
                let allowed = strategy.restartsRoundOnLoss ? timing.timeout * 2 + ringAllowance : timing.timeout
                for (key, assignment) in pending where ContinuousClock.now - sentAt[key]! > allowed {
                    let hint = strategy.restartsRoundOnLoss ? " (a ring's round must end within twice the timeout and three times its longest round yet, or the timeout for each of its steps before any round was timed: give a longer timeout for long steps)" : ""
                    if let worker = workers[assignment.worker] { drop(worker, because: "no result within \(allowed)\(hint)", penalize: true) }
                }
                let busy = Set(pending.values.map(\.worker)).union(helpers.values)
                var idle = participants.map(\.peer).filter { !busy.contains($0) }
                for key in pending.keys.sorted() where speculate && helpers[key] == nil && ContinuousClock.now - sentAt[key]! >= speculationDelay(firstAnswer) {
                    guard !idle.isEmpty, let worker = workers[idle.removeFirst()] else { break }
                    helpers[key] = worker.peer
                    send(pending[key]!.work.message, to: worker)
                }
            }
            // Work held by workers that are gone (timed out, unreachable, failed).
            let orphaned = pending.filter { workers[$0.value.worker] == nil }
            if !orphaned.isEmpty {
                if strategy.deadline == nil { try requireWorkers() }
                for key in orphaned.keys.sorted() where pending[key] != nil {
                    let assignment = pending[key]!
                    redo(assignment.keys.filter { pending[$0] != nil }, of: assignment, among: participants)
                    if strategy.restartsRoundOnLoss { break }
                }
            }
            advanceMasking()
        }
        for peer in answeredOwn.subtracting(tookOver) { workers[peer]?.leftToOthers = 0 }
        for peer in tookOver {
            guard let worker = workers[peer] else { continue }
            worker.leftToOthers += 1
            if worker.leftToOthers >= Self.takeoversAllowed {
                drop(worker, because: "others answered its work \(worker.leftToOthers) steps in a row", penalize: true)
            }
        }
        var masked: (sum: [UInt32], server: MaskingServer)?
        if let masking {
            do {
                if let maskingFailure {
                    report.missed += pending.keys.sorted()
                    throw ClusterError(maskingFailure)
                }
                // The loop ended without relaying shares: the deadline passed (or every worker went) first.
                guard masking.roster != nil else { throw ClusterError("not every sampled client still there sent its keys in time") }
                guard !masking.maskers.isEmpty else { throw ClusterError("not every client of the roster still there sent its shares in time") }
                masked = (try unmask(masking, results: results, hosted: hosted, round: round, started: start), masking)
            } catch {
                report.skipped = "secure aggregation failed: \(error)"
                logger.warning("round \(round + 1): secure aggregation failed: \(error); the global model stays as it was")
            }
        }
        report.answered = answers.values.reduce(0, +)
        report.missed.sort()
        if report.skipped == nil, report.answered < strategy.minimumResults {
            report.skipped = "fewer than \(strategy.minimumResults) results"
            logger.warning("round \(round + 1) got \(report.answered) result\(report.answered == 1 ? "" : "s"), fewer than the minimum of \(strategy.minimumResults); the global model stays as it was")
        }
        // In key order, whatever order they arrived in: the same results give the same model.
        return (results.sorted { $0.key < $1.key }.map(\.value), answeredBy, masked)
    }

    /// Names the survivors (the clients whose masked results came) to the workers that host them, waits for their
    /// revealed shares (up to the round's deadline or the worker timeout, whichever is later), and unmasks the sum.
    private func unmask(_ masking: MaskingServer, results: [Int: S.Result], hosted: [PeerID: Set<UInt32>], round: Int,
                        started: ContinuousClock.Instant) throws -> [UInt32] {
        let unmask = try masking.unmask(survivors: results.keys.map { UInt32($0) })
        for (peer, clients) in hosted where !clients.isDisjoint(with: unmask.survivors) {
            if let worker = workers[peer] { send(.unmask(unmask), to: worker) }
        }
        let allowed = max((strategy.deadline ?? .zero) - started.duration(to: .now), timing.timeout)
        let end = ContinuousClock.now + allowed
        while !masking.revealComplete {
            let left = ContinuousClock.now.duration(to: end)
            guard left > .zero else { throw ClusterError("fewer than \(masking.roster!.threshold) clients revealed their shares within \(allowed)") }
            if let (peer, frames) = try transport.receive(timeout: min(timing.heartbeat, left)), let message = handle(peer, frames) {
                if case .reveal(let reveal) = message, reveal.round == UInt64(round) {
                    do { try masking.add(reveal, from: hosted[peer] ?? []) } catch {
                        reject("reveal from \(label(peer)): \(error)", from: peer, reply: true)
                    }
                } else if let result = S.Result(message), result.round <= UInt64(round) {
                    logger.info("discarded a result for round \(result.round + 1) from \(label(peer)), which came after the round's masked results were counted")
                } else {
                    reject("\(message.type) from \(label(peer)) while round \(round + 1) is unmasked", from: peer, reply: true)
                }
            }
            expireAndHeartbeat()
        }
        return try masking.sum(results.mapValues { $0.masked ?? [] }.reduce(into: [:]) { $0[UInt32($1.key)] = $1.value })
    }

    /// Counts, per worker, the steps in a row whose gradients a robust rule flagged; reports a worker when it
    /// starts and every 10 steps, and drops it (as for unanswered work) after `dropFlaggedAfter` if set.
    private func judge(flagged: [Int], answeredBy: [Int: PeerID], round: Int) {
        let offenders = Set(flagged.compactMap { answeredBy[$0] })
        for worker in ready {
            guard offenders.contains(worker.peer) else { worker.flaggedInARow = 0; continue }
            worker.flaggedInARow += 1
            let n = worker.flaggedInARow
            if let limit = settings.dropFlaggedAfter, n >= limit {
                drop(worker, because: "its gradients were outliers \(n) steps in a row", penalize: true)
            } else if n == 1 || n % 10 == 0 {
                logger.warning("worker \(worker.label): its gradient was an outlier in step \(round + 1) (\(n) in a row)")
            }
        }
    }

    private var participants: [Participant] { ready.map { Participant(peer: $0.peer, clients: $0.clients, ringEndpoint: $0.ringEndpoint) } }

    private func requireWorkers() throws {
        let count = ready.count
        guard count >= max(settings.minimumWorkers, 1) else {
            throw ClusterError("\(count) live worker\(count == 1 ? "" : "s"), fewer than the minimum of \(max(settings.minimumWorkers, 1))")
        }
    }

    /// Decodes and files one message. Returns results (gradients) for the caller to match against its work;
    /// handles everything else here.
    private func handle(_ peer: PeerID, _ frames: [Frame]) -> Message? {
        bytesReceived += frames.reduce(0) { $0 + $1.byteCount }
        if ignored.contains(peer) {
            rejected += 1
            ignoredSinceLog += 1
            return nil
        }
        let message: Message
        do {
            message = try WireCodec.decode(frames)
        } catch let error as ProtocolError {
            reject("malformed message from \(label(peer)): \(error)", from: peer, reply: true)
            if let version = error.peerVersion {
                let reason = "protocol version \(version) is not supported; this coordinator speaks version \(WireCodec.version)"
                sendFrames(WireCodec.refusal(reason, peerVersion: version), to: peer)
            }
            return nil
        } catch {
            return nil
        }
        if case .hello(let hello) = message {
            welcome(hello, from: peer)
            return nil
        }
        guard let worker = workers[peer] else {
            reject("\(message.type) from \(label(peer))", from: peer, reply: false)
            sendRaw(.error(ErrorReport(code: .notRegistered, text: "not registered: send hello first")), to: peer)
            return nil
        }
        worker.lastHeard = .now
        if !worker.ready, case .heartbeat = message { confirm(worker) }
        guard workers[peer] != nil else { return nil }
        switch message {
        case .heartbeat:
            return nil
        case .error(let report) where report.code == .leaving:
            drop(worker, because: report.text, departed: true)
            sendRaw(.shutdown(Shutdown(reason: "goodbye")), to: peer)
            return nil
        case .error(let report):
            logger.warning("worker \(worker.label) reports: \(report.text)")
            if report.code == .fatal { drop(worker, because: "it failed: \(report.text)") }
            return nil
        case .gradient, .update, .maskingKeys, .maskingShares, .reveal:
            return message
        case .ringEndpoint(let given):
            if !ring {
                reject("a ring endpoint from \(worker.label) in a run without a ring", from: peer, reply: true)
            } else if worker.ready {
                reject("a second ring endpoint from \(worker.label)", from: peer, reply: true)
            } else if !given.endpoint.hasPrefix("tcp://") {
                reject("ring endpoint \(given.endpoint) of \(worker.label): not a tcp:// endpoint", from: peer, reply: true)
            } else {
                worker.ringEndpoint = given.endpoint
            }
            return nil
        default:
            reject("\(message.type) is not a message a worker sends (from \(worker.label))", from: peer, reply: true)
            return nil
        }
    }

    private func label(_ peer: PeerID) -> String { workers[peer]?.label ?? "unregistered peer \(peer)" }

    /// Counts a rejected message and tells a registered sender when `reply` is set. The log gets each peer's
    /// first few rejections in full and then a count per interval, so a flooding peer cannot fill it.
    private func reject(_ text: String, from peer: PeerID, reply: Bool) {
        rejected += 1
        if rejectionLog.record(peer) { logger.warning("rejected \(text)") }
        badMessages[peer, default: 0] += 1
        if badMessages[peer]! >= AdmissionLimits.badMessages, ignored.count < AdmissionLimits.ignoredPeers {
            ignored.insert(peer)
            badMessages[peer] = nil
            logger.warning("ignoring \(label(peer)) for the rest of the run: \(AdmissionLimits.badMessages) of its messages were rejected")
            if let worker = workers[peer] {
                penalties[peer] = (Self.banAfter, .now)
                drop(worker, because: "it sent \(AdmissionLimits.badMessages) rejected messages")
            }
            return
        }
        if badMessages.count > AdmissionLimits.ignoredPeers { badMessages.removeAll() }
        if reply, workers[peer] != nil {
            sendRaw(.error(ErrorReport(code: .badMessage, text: "rejected: \(text)")), to: peer)
        }
    }

    /// Logs how many rejections of each peer went unlogged in the last interval.
    private func summariseRejections() {
        for (peer, count, over) in rejectionLog.due() {
            logger.warning("rejected \(count) more message\(count == 1 ? "" : "s") from \(label(peer)) in the last \(over)")
        }
        if ignoredSinceLog > 0, rejectionLog.ignoredDue() {
            logger.warning("dropped \(ignoredSinceLog) message\(ignoredSinceLog == 1 ? "" : "s") of \(ignored.count) ignored peer\(ignored.count == 1 ? "" : "s") unread")
            ignoredSinceLog = 0
        }
    }

    /// Drops workers not heard from within the timeout, and heartbeats the idle ones.
    private func expireAndHeartbeat() {
        summariseRejections()
        let now = ContinuousClock.now
        for worker in live {
            if now - worker.lastHeard > timing.timeout {
                drop(worker, because: "nothing heard for \(timing.timeout)")
            } else if now - worker.lastSent >= timing.heartbeat {
                send(.heartbeat(Heartbeat(session: 0)), to: worker)
            }
        }
    }

    /// How long work may be out before an idle worker gets it too: three times as long as the round's first
    /// answer took, plus 20 ms, so that a worker the machine merely paused is rarely overtaken; a heartbeat
    /// interval while no answer has come (a worker that joined during the round is then the idle one).
    private func speculationDelay(_ first: Duration?) -> Duration { first.map { $0 * 3 + .milliseconds(20) } ?? timing.heartbeat }

    /// Removes a worker. `penalize`: it left work unanswered, so a new hello of its waits (the timeout, doubled
    /// with each time), and after `banAfter` times it is refused for the rest of the run. `departed`: it said
    /// it leaves, which is no failure.
    private func drop(_ worker: WorkerRecord, because reason: String, penalize: Bool = false, departed: Bool = false) {
        guard workers.removeValue(forKey: worker.peer) != nil else { return }
        if departed {
            logger.info("worker \(worker.label) left (\(reason)); \(ready.count) live")
            return
        }
        if penalize {
            let failures = (penalties[worker.peer]?.failures ?? 0) + 1
            penalties[worker.peer] = (failures, .now + timing.timeout * (1 << min(failures - 1, 10)))
        }
        if worker.ready {
            metrics.lostWorker()
            logger.warning("lost worker \(worker.label): \(reason); \(ready.count) live")
        } else {
            logger.warning("dropped \(worker.label), welcomed but not heard from since: \(reason)")
        }
    }

    private func send(_ message: Message, to worker: WorkerRecord) {
        worker.lastSent = .now
        if !sendRaw(message, to: worker.peer) {
            drop(worker, because: "it cannot be reached")
        }
    }

    @discardableResult
    private func sendRaw(_ message: Message, to peer: PeerID) -> Bool { sendFrames(WireCodec.encode(message), to: peer) }

    @discardableResult
    private func sendFrames(_ frames: [Frame], to peer: PeerID) -> Bool {
        do {
            try transport.send(frames, to: peer)
            bytesSent += frames.reduce(0) { $0 + $1.byteCount }
            return true
        } catch {
            logger.debug("send to \(peer) failed: \(error)")
            return false
        }
    }
}
