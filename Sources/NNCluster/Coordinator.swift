import Foundation
import Logging
import NNCore
import NNData
import NNProtocol

/// Runs a strategy's rounds over a transport: registers workers, hands out each round's work, collects the
/// results, notices lost workers (heartbeats) and hands their work to the others, and rejects bad messages
/// without stopping.
public final class Coordinator {
    public struct Settings: Sendable {
        public var expectedWorkers: Int
        /// Below this many live workers the run stops with an error.
        public var minimumWorkers: Int
        public var registrationTimeout: Duration
        /// Say something to an idle peer at least this often.
        public var heartbeatInterval: Duration
        /// A worker not heard from for this long is lost.
        public var workerTimeout: Duration

        public init(expectedWorkers: Int, minimumWorkers: Int = 1, registrationTimeout: Duration = .seconds(60),
                    heartbeatInterval: Duration = .milliseconds(500), workerTimeout: Duration = .seconds(5)) {
            self.expectedWorkers = expectedWorkers; self.minimumWorkers = minimumWorkers
            self.registrationTimeout = registrationTimeout; self.heartbeatInterval = heartbeatInterval; self.workerTimeout = workerTimeout
        }
    }

    /// Identity of the data every worker must hold.
    public struct DataIdentity: Sendable {
        public var fingerprint: [UInt8]
        public var inputWidth: Int
        public var classes: Int
        public init(fingerprint: [UInt8], inputWidth: Int, classes: Int) {
            self.fingerprint = fingerprint; self.inputWidth = inputWidth; self.classes = classes
        }
    }

    /// Totals of one epoch, handed to `onEpoch`.
    public struct EpochReport: Sendable {
        public var epoch: Int
        public var samples = 0
        public var lossSum = 0.0
        public var correct = 0
        public var seconds = 0.0
        public var computeSeconds = 0.0
        public var communicationSeconds = 0.0
        public var aggregationSeconds = 0.0
        public var bytesSent = 0
        public var bytesReceived = 0
        public var workers = 0
        public var meanLoss: Double { samples == 0 ? 0 : lossSum / Double(samples) }
        public var accuracy: Double { samples == 0 ? 0 : Double(correct) / Double(samples) }
    }

    final class WorkerRecord {
        let peer: PeerID
        let index: Int
        let name: String
        let session: UInt64
        var lastHeard: ContinuousClock.Instant
        var lastSent: ContinuousClock.Instant
        init(peer: PeerID, index: Int, name: String, session: UInt64, now: ContinuousClock.Instant) {
            self.peer = peer; self.index = index; self.name = name; self.session = session
            lastHeard = now; lastSent = now
        }
        var label: String { "\(name) (\(peer))" }
    }

    private let transport: ServerTransport
    public let strategy: Strategy
    private let configuration: RunConfiguration
    private let data: DataIdentity
    public let settings: Settings
    private var logger: Logger
    private var workers: [PeerID: WorkerRecord] = [:]
    private var nextIndex = 0
    private var bytesSent = 0, bytesReceived = 0
    /// Messages rejected so far (malformed, unexpected, from unknown peers).
    public private(set) var rejected = 0

    public init(transport: ServerTransport, strategy: Strategy, configuration: RunConfiguration, data: DataIdentity,
                settings: Settings, logger: Logger) {
        self.transport = transport; self.strategy = strategy; self.configuration = configuration
        self.data = data; self.settings = settings; self.logger = logger
    }

    private var live: [WorkerRecord] { workers.values.sorted { $0.index < $1.index } }

    /// Runs every round. `onEpoch` sees each epoch's totals (evaluate, log, checkpoint there); `onRound` is
    /// called after every round with the epoch's running totals and the round within the epoch.
    public func run(onRound: (EpochReport, Int) -> Void = { _, _ in }, onEpoch: (EpochReport) throws -> Void) throws {
        try register()
        for epoch in 1...strategy.epochs {
            var report = EpochReport(epoch: epoch)
            let start = ContinuousClock.now
            let sentBefore = bytesSent, receivedBefore = bytesReceived
            for r in 0..<strategy.roundsPerEpoch {
                let round = (epoch - 1) * strategy.roundsPerEpoch + r
                let roundStart = ContinuousClock.now
                try collect(round: round)
                let aggregationStart = ContinuousClock.now
                let result = try strategy.aggregate(round: round)
                let aggregation = aggregationStart.duration(to: .now).seconds
                report.samples += result.samples
                report.lossSum += result.lossSum
                report.correct += result.correct
                report.computeSeconds += result.computeSeconds
                report.communicationSeconds += max(roundStart.duration(to: aggregationStart).seconds - result.computeSeconds, 0)
                report.aggregationSeconds += aggregation
                onRound(report, r + 1)
            }
            report.seconds = start.duration(to: .now).seconds
            report.bytesSent = bytesSent - sentBefore
            report.bytesReceived = bytesReceived - receivedBefore
            report.workers = workers.count
            try onEpoch(report)
        }
        shutdown(reason: "training finished")
    }

    /// Tells every worker to stop. Also for the command to call after a failure.
    public func shutdown(reason: String) {
        for worker in live { send(.shutdown(Shutdown(reason: reason)), to: worker) }
    }

    // MARK: Registration

    private func register() throws {
        let deadline = ContinuousClock.now + settings.registrationTimeout
        logger.info("waiting for \(settings.expectedWorkers) worker\(settings.expectedWorkers == 1 ? "" : "s")")
        while workers.count < settings.expectedWorkers {
            guard ContinuousClock.now < deadline else {
                throw ClusterError("only \(workers.count) of \(settings.expectedWorkers) workers registered within \(settings.registrationTimeout)")
            }
            if let (peer, frames) = try transport.receive(timeout: settings.heartbeatInterval) {
                if let message = handle(peer, frames) {
                    reject("\(message.type) from \(workers[peer]?.label ?? "\(peer)") before training started", peer: nil)
                }
            }
            expireAndHeartbeat()
        }
    }

    private func welcome(_ hello: Hello, from peer: PeerID) {
        if let existing = workers[peer], existing.session == hello.session {
            // A repeated hello (the worker resends until welcomed): answer it again.
            send(.welcome(Welcome(workerIndex: UInt32(existing.index), configuration: encodedConfiguration)), to: existing)
            return
        }
        if let reason = refusal(hello) {
            logger.warning("refused worker \(hello.name) (\(peer)): \(reason)")
            sendRaw(.refuse(Refuse(reason: reason)), to: peer)
            return
        }
        let record = WorkerRecord(peer: peer, index: nextIndex, name: hello.name, session: hello.session, now: .now)
        nextIndex += 1
        workers[peer] = record
        send(.welcome(Welcome(workerIndex: UInt32(record.index), configuration: encodedConfiguration)), to: record)
        logger.info("worker \(record.label) registered as #\(record.index); \(workers.count) live")
    }

    private func refusal(_ hello: Hello) -> String? {
        if hello.dataFingerprint != data.fingerprint {
            return "its data differs from the coordinator's (fingerprint \(hex(hello.dataFingerprint.prefix(8))) vs \(hex(data.fingerprint.prefix(8)))): use the same data set and files"
        }
        if Int(hello.inputWidth) != data.inputWidth || Int(hello.classes) != data.classes {
            return "its data has \(hello.inputWidth) inputs and \(hello.classes) classes, the model needs \(data.inputWidth) and \(data.classes)"
        }
        return nil
    }

    private lazy var encodedConfiguration: String = String(decoding: try! JSONEncoder.sorted.encode(configuration), as: UTF8.self)

    // MARK: Rounds

    /// Sends the round's work and waits for every piece, handing a lost worker's pieces to the others. A worker
    /// is lost when it goes silent, cannot be reached, or leaves a piece unanswered for the worker timeout (a
    /// peer that keeps talking but never delivers must not stall the run).
    private func collect(round: Int) throws {
        var pending: [Int: Assignment] = [:]
        var sentAt: [Int: ContinuousClock.Instant] = [:]
        func dispatch(_ assignments: [Assignment]) {
            for a in assignments {
                pending[a.key] = a
                sentAt[a.key] = .now
                if let worker = workers[a.worker] { send(a.message, to: worker) }
            }
        }
        try requireWorkers()
        dispatch(strategy.configure(round: round, workers: live.map(\.peer)))
        while !pending.isEmpty {
            if let (peer, frames) = try transport.receive(timeout: settings.heartbeatInterval),
               let message = handle(peer, frames) {
                if let key = strategy.key(of: message, round: round), let assignment = pending[key], assignment.worker == peer {
                    do {
                        try strategy.accept(message, for: assignment)
                        pending[key] = nil
                    } catch {
                        reject("\(message.type) from \(workers[peer]?.label ?? "\(peer)") for round \(round): \(error)", peer: peer)
                        // The worker is alive but sent something unusable: the piece goes to the others.
                        if let other = live.first(where: { $0.peer != peer }) ?? workers[peer] {
                            pending[key] = nil
                            dispatch(strategy.reassign(assignment, round: round, workers: [other.peer]))
                        }
                    }
                } else {
                    reject("unexpected \(message.type) from \(workers[peer]?.label ?? "\(peer)") in round \(round)", peer: nil)
                }
            }
            expireAndHeartbeat()
            for (key, assignment) in pending where ContinuousClock.now - sentAt[key]! > settings.workerTimeout {
                if let worker = workers[assignment.worker] { drop(worker, because: "no result within \(settings.workerTimeout)") }
            }
            // Work held by workers that are gone (timed out, unreachable, failed) goes to the others.
            let orphaned = pending.filter { workers[$0.value.worker] == nil }
            if !orphaned.isEmpty {
                try requireWorkers()
                for (key, assignment) in orphaned.sorted(by: { $0.key < $1.key }) {
                    pending[key] = nil
                    dispatch(strategy.reassign(assignment, round: round, workers: live.map(\.peer)))
                }
            }
        }
    }

    private func requireWorkers() throws {
        guard workers.count >= max(settings.minimumWorkers, 1) else {
            throw ClusterError("\(workers.count) live worker\(workers.count == 1 ? "" : "s"), fewer than the minimum of \(max(settings.minimumWorkers, 1))")
        }
    }

    /// Decodes and files one message. Returns results (gradients) for the caller to match against its work;
    /// handles everything else here.
    private func handle(_ peer: PeerID, _ frames: [Frame]) -> Message? {
        bytesReceived += frames.reduce(0) { $0 + $1.byteCount }
        let message: Message
        do {
            message = try WireCodec.decode(frames)
        } catch let error as ProtocolError {
            reject("malformed message from \(workers[peer]?.label ?? "unregistered peer \(peer)"): \(error)", peer: peer)
            if let version = error.peerVersion {
                sendRaw(.refuse(Refuse(reason: "protocol version \(version) is not supported; this coordinator speaks version \(WireCodec.version)")), to: peer)
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
            reject("\(message.type) from unregistered peer \(peer)", peer: nil)
            sendRaw(.error(ErrorReport(code: .notRegistered, text: "not registered: send hello first")), to: peer)
            return nil
        }
        worker.lastHeard = .now
        switch message {
        case .heartbeat:
            return nil
        case .error(let report):
            logger.warning("worker \(worker.label) reports: \(report.text)")
            if report.code == .fatal { drop(worker, because: "it failed: \(report.text)") }
            return nil
        case .gradient:
            return message
        default:
            reject("\(message.type) is not a message a worker sends (from \(worker.label))", peer: peer)
            return nil
        }
    }

    private func reject(_ text: String, peer: PeerID?) {
        rejected += 1
        logger.warning("rejected \(text)")
        if let peer, workers[peer] != nil {
            sendRaw(.error(ErrorReport(code: .badMessage, text: "rejected: \(text)")), to: peer)
        }
    }

    /// Drops workers not heard from within the timeout, and heartbeats the idle ones.
    private func expireAndHeartbeat() {
        let now = ContinuousClock.now
        for worker in live {
            if now - worker.lastHeard > settings.workerTimeout {
                drop(worker, because: "nothing heard for \(settings.workerTimeout)")
            } else if now - worker.lastSent >= settings.heartbeatInterval {
                send(.heartbeat(Heartbeat(session: 0)), to: worker)
            }
        }
    }

    private func drop(_ worker: WorkerRecord, because reason: String) {
        guard workers.removeValue(forKey: worker.peer) != nil else { return }
        logger.warning("lost worker \(worker.label): \(reason); \(workers.count) live")
    }

    private func send(_ message: Message, to worker: WorkerRecord) {
        worker.lastSent = .now
        if !sendRaw(message, to: worker.peer) {
            drop(worker, because: "it cannot be reached")
        }
    }

    @discardableResult
    private func sendRaw(_ message: Message, to peer: PeerID) -> Bool {
        let frames = WireCodec.encode(message)
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

func hex<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
    bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
}
