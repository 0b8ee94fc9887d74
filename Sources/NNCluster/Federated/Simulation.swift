import Foundation
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
    /// each answering client upload: the model and its frame header.
    public func run(onRound: (RoundReport) throws -> Bool) throws {
        let modelBytes = WireCodec.encode(.train(TrainRequest(round: 0, clients: [0], learningRate: 1, parameters: strategy.network.parameters.array,
                                                              state: strategy.network.state.array))).reduce(0) { $0 + $1.byteCount }
        let everyone = [Participant(peer: PeerID(Array("simulation".utf8)), clients: host.clients)]
        for round in 0..<strategy.rounds {
            let start = ContinuousClock.now
            var report = RoundReport(round: round)
            for assignment in strategy.configure(round: round, participants: everyone) {
                guard case .train(let request) = assignment.message else { continue }
                report.expected += request.clients.count
                for update in try host.train(request) {
                    do {
                        try strategy.accept(.update(update), key: Int(update.client), for: assignment)
                        report.answered += 1
                    } catch {
                        rejected += 1
                        report.missed.append(Int(update.client))
                    }
                }
            }
            let aggregationStart = ContinuousClock.now
            report.skipped = report.answered < strategy.minimumResults
            if !report.skipped { report.result = try strategy.aggregate(round: round) }
            report.aggregationSeconds = aggregationStart.duration(to: .now).seconds
            report.seconds = start.duration(to: .now).seconds
            report.bytesSent = report.expected * modelBytes
            report.bytesReceived = report.answered * modelBytes
            report.workers = 1
            guard try onRound(report) else { return }
        }
    }
}
