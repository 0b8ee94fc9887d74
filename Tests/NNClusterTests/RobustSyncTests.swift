import Foundation
import Logging
import NNCluster
import NNCore
import NNData
import NNProtocol
import TestSupport
import Testing

/// A worker's connection that multiplies every gradient it sends by `factor`: an admitted worker gone wrong.
final class PoisoningClient: ClientTransport, @unchecked Sendable {
    private let inner: ClientTransport
    let factor: Float
    init(_ inner: ClientTransport, factor: Float) { self.inner = inner; self.factor = factor }

    func send(_ frames: [Frame]) throws {
        guard case .gradient(var g)? = try? WireCodec.decode(frames) else { return try inner.send(frames) }
        g.gradient = g.gradient.map { $0 * factor }
        try inner.send(WireCodec.encode(.gradient(g)))
    }

    func receive(timeout: Duration) throws -> [Frame]? { try inner.receive(timeout: timeout) }
}

@Suite(.serialized, .timeLimit(.minutes(2))) struct RobustSyncTests {
    /// Three workers, the last one sending its gradients sign-flipped × 100 when `poisoned`; the test accuracy,
    /// the coordinator's log and the mean aggregation time of a step.
    func train(robust: RobustGradients?, poisoned: Bool, dropAfter: Int? = nil, data: (train: Dataset, test: Dataset)) throws -> (accuracy: Double, log: [String], aggregation: Double) {
        var settings = SyncRun(spec: try ModelSpec(widths: [784, 32, 10]), epochs: 3).settings(batch: 25)
        settings.robust = robust
        let lines = Locked<[String]>([])
        let run = SyncTrainingRun(settings: settings, cluster: CoordinatorSettings(expectedWorkers: 3, timing: quickTiming, dropFlaggedAfter: dropAfter),
                                  train: data.train, test: data.test, logger: Logger(label: "test", factory: { _ in CapturingLogHandler(lines: lines) }))
        let network = InProcessNetwork()
        let server = network.server()
        let threads = WorkerThreads()
        for i in 0..<3 {
            let transport: ClientTransport = poisoned && i == 2 ? PoisoningClient(network.connect(), factor: -100) : network.connect()
            threads.start(transport: transport, data: data.train, name: "worker-\(i)", session: UInt64(i + 1))
        }
        let outcome = try run.run(over: server)
        #expect(threads.wait())
        let aggregation = outcome.epochs.reduce(0) { $0 + $1.total.aggregationSeconds } / Double(run.strategy.rounds)
        return (outcome.evaluation!.accuracy, lines.get(), aggregation)
    }

    /// Without a robust rule one poisoned worker of three collapses the model; with the median or the trimmed
    /// mean (a third cut) the accuracy stays within a point of an undisturbed run, with the norm bound and its
    /// drop policy within two, and the poisoned worker is reported. Prints each rule's aggregation time a step (a debug build's).
    @Test func poisonedWorkerIsOutvoted() throws {
        let data = try mnistSubset(15000)
        let clean = try train(robust: nil, poisoned: false, data: data)
        let collapsed = try train(robust: nil, poisoned: true, data: data)
        #expect(collapsed.accuracy < clean.accuracy - 0.2, "poisoned \(collapsed.accuracy), clean \(clean.accuracy)")
        var lines = [String(format: "exact mean: %.2f%% undisturbed, %.2f%% poisoned; aggregation %.3f ms a step", clean.accuracy * 100, collapsed.accuracy * 100, clean.aggregation * 1e3)]
        // The norm bound only limits a wrong gradient (a sign flip still pulls the wrong way until the worker is
        // dropped, and Adam remembers it): within 2 points; the median and trimmed mean outvote it: within 1.
        for (name, robust, dropAfter, tolerance) in [("median", RobustGradients(rule: .median), nil, 0.01),
                                                     ("trimmed-mean 0.34", RobustGradients(rule: .trimmedMean, trim: 0.34), nil, 0.01),
                                                     ("norm-bound, drop after 1", RobustGradients(rule: .normBound), Optional(1), 0.02)] {
            let defended = try train(robust: robust, poisoned: true, dropAfter: dropAfter, data: data)
            #expect(abs(defended.accuracy - clean.accuracy) <= tolerance + 1e-9, "\(name): \(defended.accuracy), undisturbed \(clean.accuracy)")
            #expect(defended.log.contains { $0.contains("worker-2") && $0.contains("outlier") }, "\(name): \(defended.log)")
            lines.append(String(format: "%@: %.2f%% poisoned; aggregation %.3f ms a step", name, defended.accuracy * 100, defended.aggregation * 1e3))
        }
        print(lines.joined(separator: "\n"))
    }
}
