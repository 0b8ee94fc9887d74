import NNCore
import NNProtocol

/// A federated experiment in one process: the same strategy and the same client code as a coordinator with
/// workers, with all clients in one `ClientHost` and no sockets or encoding in between, so a run gives the same
/// model as the multi-process run of the experiment. The clients are split among `hosts` as that many workers
/// split them by default; only `hostAggregation` makes the split matter to the model.
public final class Simulation {
    public let strategy: FederatedAveraging
    public let host: ClientHost
    public let hosts: Int
    /// Updates rejected so far (non-finite values from a diverging or adversarial client).
    public private(set) var rejected = 0

    public init(strategy: FederatedAveraging, host: ClientHost, hosts: Int = 1) throws {
        guard host.clients == 0..<strategy.experiment.clients else {
            throw ClusterError("a simulation hosts every client (0..<\(strategy.experiment.clients)), not \(host.clients)")
        }
        guard hosts == 1 || strategy.experiment.hostAggregation else {
            throw ClusterError("hosts matter only to an experiment with hostAggregation, and this one has none")
        }
        let clients = strategy.experiment.clients
        guard hosts >= 1, Participant.evenBlocks(clients: clients, workers: hosts).count == hosts else {
            throw ClusterError("\(hosts) hosts cannot each take an even share of \(clients) clients (⌈\(clients) ÷ \(hosts)⌉ a host leaves some with none)")
        }
        self.strategy = strategy
        self.host = host
        self.hosts = hosts
    }

    /// Runs the rounds while `onRound` returns true. Bytes count what each sampled client would download and
    /// each answering client upload: the model (or its compressed change) and a message header.
    public func run(onRound: (RoundReport) throws -> Bool) throws {
        let network = strategy.network
        let modelBytes = WireCodec.encode(.update(ClientUpdate(round: 0, client: 0, samples: 0, correct: 0, lossSum: 0, computeNanoseconds: 0,
                                                               parameters: network.parameters.array, state: network.state.array)))
            .reduce(0) { $0 + $1.byteCount }
        let everyone = Participant.evenBlocks(clients: host.clients.count, workers: hosts).enumerated().map {
            Participant(peer: PeerID(Array("host \($0.offset)".utf8)), clients: $0.element)
        }
        for round in 0..<strategy.rounds {
            let start = ContinuousClock.now
            var report = RoundReport(round: round)
            var results: [ClientUpdate] = []
            var masking: (server: MaskingServer, party: MaskingParty, sum: [UInt32]?)?
            for assignment in strategy.configure(round: round, participants: everyone) {
                report.expected += assignment.keys.count
                var updates = try host.train(assignment.work)
                if let server = strategy.maskingServer(round: round, clients: assignment.keys), let spec = strategy.experiment.secureAggregation {
                    let party = MaskingParty(round: UInt64(round), clients: assignment.keys.map { UInt32($0) }, spec: spec, seed: strategy.experiment.seed)
                    masking = (server, party, nil)
                    do {
                        updates = try maskSetup(updates, global: assignment.work.parameters, server: server, party: party, report: &report)
                    } catch {
                        report.skipped = "\(error)"
                        updates = []
                    }
                }
                for update in updates {
                    do {
                        try strategy.check(update, against: assignment)
                        results.append(update)
                        report.answered += strategy.keys(answeredBy: update, of: assignment).count
                    } catch {
                        rejected += 1
                        report.missed += strategy.keys(answeredBy: update, of: assignment)
                    }
                }
            }
            if let m = masking, report.skipped == nil {
                do {
                    masking?.sum = try unmask(results, server: m.server, party: m.party, report: &report)
                } catch {
                    report.skipped = "\(error)"
                }
            }
            let aggregationStart = ContinuousClock.now
            if report.skipped == nil, report.answered < strategy.minimumResults { report.skipped = "fewer than \(strategy.minimumResults) results" }
            if report.skipped == nil {
                let sorted = results.sorted { $0.client < $1.client }
                if let m = masking, let sum = m.sum {
                    report.result = try strategy.aggregate(round: round, results: sorted, failures: report.missed, sum: sum, from: m.server)
                } else {
                    report.result = try strategy.aggregate(round: round, results: sorted, failures: report.missed)
                }
            }
            report.aggregationSeconds = aggregationStart.duration(to: .now).seconds
            report.seconds = start.duration(to: .now).seconds
            report.bytesSent += report.expected * modelBytes
            report.bytesReceived += results.reduce(0) { total, u in
                total + (u.compressed == nil && u.masked == nil ? modelBytes : Self.size(.update(u)))
            }
            report.workers = everyone.count
            report.rejectedSoFar = rejected
            guard try onRound(report) else { return }
        }
    }

    private static func size(_ message: Message) -> Int { WireCodec.encode(message).reduce(0) { $0 + $1.byteCount } }

    /// Secure aggregation up to the masked updates, every client a party of its own: keys, roster, sealed shares
    /// and their relay. Bytes count each client's messages.
    private func maskSetup(_ updates: [ClientUpdate], global: [Float], server: MaskingServer, party: MaskingParty,
                           report: inout RoundReport) throws -> [ClientUpdate] {
        let everyone = Set(updates.map(\.client))
        let keys = party.keys
        try server.add(keys, from: everyone)
        report.bytesReceived += keys.keys.reduce(0) { $0 + Self.size(.maskingKeys(MaskingKeys(round: keys.round, keys: [$1]))) }
        let roster = try server.makeRoster()
        report.bytesSent += roster.keys.count * Self.size(.maskingRoster(roster))
        let shares = try party.shares(for: roster)
        try server.add(shares, from: everyone)
        let relayed = try server.relay()
        for (client, sealed) in relayed {
            report.bytesReceived += Self.size(.maskingShares(MaskingShares(round: shares.round, shares: shares.shares.filter { $0.from == client })))
            report.bytesSent += Self.size(.maskingShares(MaskingShares(round: shares.round, shares: sealed)))
        }
        return try party.mask(updates, global: global, shares: MaskingShares(round: shares.round, shares: relayed.values.flatMap { $0 }))
    }

    /// The rest of the round: the survivors named, their shares revealed, the sum unmasked.
    private func unmask(_ results: [ClientUpdate], server: MaskingServer, party: MaskingParty, report: inout RoundReport) throws -> [UInt32] {
        let unmask = try server.unmask(survivors: results.map(\.client))
        report.bytesSent += unmask.survivors.count * Self.size(.unmask(unmask))
        let reveal = try party.reveal(unmask)
        try server.add(reveal, from: Set(unmask.survivors))
        for client in unmask.survivors {
            report.bytesReceived += Self.size(.reveal(Reveal(round: reveal.round, shares: reveal.shares.filter { $0.holder == client })))
        }
        return try server.sum(Dictionary(uniqueKeysWithValues: results.map { ($0.client, $0.masked!) }))
    }
}
