import NNCore
import NNProtocol

/// A federated experiment in one process: the same strategy and the same client code as a coordinator with
/// workers, with all clients in one `ClientHost` and no sockets or encoding in between, so a run gives the same
/// model as the multi-process run of the experiment.
public final class Simulation {
    public let strategy: FederatedAveraging
    public let host: ClientHost
    /// Updates rejected so far (non-finite values from a diverging or adversarial client).
    public private(set) var rejected = 0

    public init(strategy: FederatedAveraging, host: ClientHost) throws {
        guard host.clients == 0..<strategy.experiment.clients else {
            throw ClusterError("a simulation hosts every client (0..<\(strategy.experiment.clients)), not \(host.clients)")
        }
        self.strategy = strategy
        self.host = host
    }

    /// Runs the rounds while `onRound` returns true. Bytes count what each sampled client would download and
    /// each answering client upload: the model (or its compressed change) and a message header.
    public func run(onRound: (RoundReport) throws -> Bool) throws {
        let network = strategy.network
        let modelBytes = WireCodec.encode(.update(ClientUpdate(round: 0, client: 0, samples: 0, correct: 0, lossSum: 0, computeNanoseconds: 0,
                                                               parameters: network.parameters.array, state: network.state.array)))
            .reduce(0) { $0 + $1.byteCount }
        let everyone = [Participant(peer: PeerID(Array("simulation".utf8)), clients: host.clients)]
        for round in 0..<strategy.rounds {
            let start = ContinuousClock.now
            var report = RoundReport(round: round)
            var results: [ClientUpdate] = []
            for assignment in strategy.configure(round: round, participants: everyone) {
                report.expected += assignment.keys.count
                for update in try host.train(assignment.work) {
                    do {
                        try strategy.check(update, against: assignment)
                        results.append(update)
                    } catch {
                        rejected += 1
                        report.missed.append(Int(update.client))
                    }
                }
            }
            report.answered = results.count
            let aggregationStart = ContinuousClock.now
            report.skipped = report.answered < strategy.minimumResults
            if !report.skipped {
                report.result = try strategy.aggregate(round: round, results: results.sorted { $0.client < $1.client }, failures: report.missed)
            }
            report.aggregationSeconds = aggregationStart.duration(to: .now).seconds
            report.seconds = start.duration(to: .now).seconds
            report.bytesSent = report.expected * modelBytes
            report.bytesReceived = results.reduce(0) { total, u in
                total + (u.compressed == nil ? modelBytes : WireCodec.encode(.update(u)).reduce(0) { $0 + $1.byteCount })
            }
            report.workers = 1
            report.rejectedSoFar = rejected
            guard try onRound(report) else { return }
        }
    }
}
