import Foundation
import NNCore
import NNData
import NNProtocol

/// Hosts a range of an experiment's federated clients: their partitions of the training set, and the local
/// training each round asks of them. A worker process holds one; `nn simulate` holds one with every client.
/// Clients of one request train in parallel on `threads` threads, each with its own network; a client's result
/// depends only on the experiment, the round, the client and the global weights, never on the thread.
/// (Sendable because after `init` only the per-thread contexts change, each touched by one thread at a time.)
public final class ClientHost: @unchecked Sendable {
    public let experiment: Experiment
    public let clients: Range<Int>
    private let data: Dataset
    private let partitions: [[Int]]
    private let adversaries: Set<Int>
    private let contexts: [Context]

    /// One thread's network (in a trainer with plain SGD) and buffers.
    final class Context {
        let trainer: Trainer
        let buffer: BatchBuffer
        let global: FloatBuffer
        init(experiment: Experiment, batchCapacity: Int) {
            let network = Network(spec: experiment.model)
            trainer = Trainer(network: network, optimizer: OptimizerSettings(kind: .sgd), schedule: LearningRateSchedule(base: 0),
                              seed: experiment.seed)
            buffer = BatchBuffer(capacity: batchCapacity, inputWidth: experiment.model.inputWidth)
            global = FloatBuffer(count: experiment.strategy.proximalMu > 0 ? network.parameterCount : 0)
        }
    }

    public init(experiment: Experiment, data: Dataset, clients: Range<Int>, threads: Int) throws {
        guard clients.lowerBound >= 0, clients.upperBound <= experiment.clients, !clients.isEmpty else {
            throw ClusterError("clients \(clients) are not a non-empty part of the experiment's 0..<\(experiment.clients)")
        }
        guard experiment.model.inputWidth == data.inputWidth, experiment.model.classes == data.classes else {
            throw ClusterError("the model (\(experiment.model.description)) does not fit the data (\(data.inputWidth) inputs, \(data.classes) classes)")
        }
        self.experiment = experiment
        self.clients = clients
        self.data = data
        let all = try experiment.partition.split(labels: data.labels, classes: data.classes, clients: experiment.clients, seed: experiment.seed)
        partitions = Array(all[clients])
        adversaries = experiment.adversaries?.members(clients: experiment.clients, seed: experiment.seed) ?? []
        let largest = partitions.map(\.count).max()!
        let capacity = min(experiment.localBatch ?? largest, largest)
        contexts = (0..<max(threads, 1)).map { _ in Context(experiment: experiment, batchCapacity: capacity) }
    }

    /// Trains every client the request names and returns their updates in the request's order. `onProgress`
    /// is called on the calling thread every few local steps (a worker heartbeats there during long rounds).
    public func train(_ request: TrainRequest, onProgress: () -> Void = {}) throws -> [ClientUpdate] {
        let network = contexts[0].trainer.network
        guard request.parameters.count == network.parameterCount, request.state.count == network.state.count else {
            throw ClusterError("train request carries \(request.parameters.count) parameters and \(request.state.count) state values; the model has \(network.parameterCount) and \(network.state.count)")
        }
        guard request.learningRate > 0, request.learningRate.isFinite else {
            throw ClusterError("train request has learning rate \(request.learningRate)")
        }
        if let stray = request.clients.first(where: { !clients.contains(Int($0)) }) {
            throw ClusterError("client \(stray) is not hosted here (this worker hosts \(clients.lowerBound)..<\(clients.upperBound))")
        }
        guard Set(request.clients).count == request.clients.count else { throw ClusterError("train request names a client twice") }
        let jobs = request.clients.map(Int.init)
        var results = [ClientUpdate?](repeating: nil, count: jobs.count)
        let queue = JobQueue(count: jobs.count)
        let caller = pthread_self()
        withoutActuallyEscaping(onProgress) { onProgress in
            nonisolated(unsafe) let progress = onProgress
            results.withUnsafeMutableBufferPointer { slots in
                nonisolated(unsafe) let slots = slots
                DispatchQueue.concurrentPerform(iterations: min(contexts.count, jobs.count)) { t in
                    let onCaller = pthread_equal(pthread_self(), caller) != 0
                    while let j = queue.take() {
                        slots[j] = trainClient(jobs[j], request: request, context: contexts[t], progress: onCaller ? progress : nil)
                    }
                }
            }
        }
        return results.map { $0! }
    }

    /// E local epochs of minibatch SGD over the client's partition from the global weights; with FedProx each
    /// step adds μ(w − w_global) to the gradient.
    private func trainClient(_ client: Int, request: TrainRequest, context: Context, progress: (() -> Void)?) -> ClientUpdate {
        let started = ContinuousClock.now
        let network = context.trainer.network
        let parameters = network.parameters, count = network.parameterCount
        request.parameters.withUnsafeBufferPointer { parameters.base.update(from: $0.baseAddress!, count: count) }
        request.state.withUnsafeBufferPointer { if let base = $0.baseAddress { network.state.base.update(from: base, count: $0.count) } }
        let mu = experiment.strategy.proximalMu
        if mu > 0 { context.global.base.update(from: parameters.base, count: count) }
        var order = partitions[client - clients.lowerBound]
        let batch = min(experiment.localBatch ?? order.count, order.count)
        var rng = SeededRandom(seed: experiment.seed, stream: 0x4C4F_4341, request.round, UInt64(client))
        var lossSum = 0.0, correct = 0, step = 0
        for _ in 0..<experiment.localEpochs {
            rng.shuffle(&order)
            lossSum = 0; correct = 0
            for start in stride(from: 0, to: order.count, by: batch) {
                let indices = order[start..<min(start + batch, order.count)]
                data.gather(indices, into: context.buffer.x.base, labels: context.buffer.labels)
                let r = context.trainer.computeGradients(x: context.buffer.x.base, labels: context.buffer.labels, batch: indices.count, step: step)
                lossSum += r.loss * Double(indices.count)
                correct += r.correct
                if mu > 0 {
                    let g = network.gradients.base, w = parameters.base, w0 = context.global.base
                    for i in 0..<count { g[i] += mu * (w[i] - w0[i]) }
                }
                context.trainer.optimizer.step(parameters: parameters, gradients: network.gradients, learningRate: request.learningRate)
                step += 1
                if step % 16 == 0 { progress?() }
            }
        }
        if adversaries.contains(client), let adversary = experiment.adversaries {
            corrupt(parameters, global: request.parameters, adversary, client: client, round: request.round)
        }
        return ClientUpdate(round: request.round, client: UInt32(client), samples: UInt32(order.count), correct: UInt32(correct),
                            lossSum: lossSum, computeNanoseconds: UInt64(started.duration(to: .now).seconds * 1e9),
                            parameters: parameters.array, state: network.state.array)
    }

    private func corrupt(_ parameters: FloatBuffer, global: [Float], _ adversary: AdversarySpec, client: Int, round: UInt64) {
        let w = parameters.base
        switch adversary.kind {
        case .scale:
            let s = adversary.scale ?? -10
            for i in 0..<parameters.count { w[i] = global[i] + s * (w[i] - global[i]) }
        case .random:
            var rng = SeededRandom(seed: experiment.seed, stream: 0x4E4F_4953, round, UInt64(client))
            let sd = adversary.noise ?? 1
            for i in 0..<parameters.count { w[i] = sd * rng.nextGaussian() }
        }
    }

    /// Test loss and confusion matrix of `parameters`, the test set split among the threads.
    public func evaluate(parameters: [Float], state: [Float], on test: Dataset) -> Evaluation {
        let parts = contexts.count
        var evaluations = [Evaluation?](repeating: nil, count: parts)
        let chunk = (test.sampleCount + parts - 1) / parts
        evaluations.withUnsafeMutableBufferPointer { slots in
            nonisolated(unsafe) let slots = slots
            DispatchQueue.concurrentPerform(iterations: parts) { t in
                let network = contexts[t].trainer.network
                parameters.withUnsafeBufferPointer { network.parameters.base.update(from: $0.baseAddress!, count: $0.count) }
                state.withUnsafeBufferPointer { if let base = $0.baseAddress { network.state.base.update(from: base, count: $0.count) } }
                let range = (t * chunk)..<min((t + 1) * chunk, test.sampleCount)
                slots[t] = range.isEmpty ? nil : network.evaluate(test, range: range)
            }
        }
        return Evaluation.merging(evaluations.compactMap { $0 })
    }
}

/// Hands out job numbers 0..<count to threads, each once.
final class JobQueue: @unchecked Sendable {
    private let lock = NSLock()
    private var next = 0
    private let count: Int
    init(count: Int) { self.count = count }

    func take() -> Int? {
        lock.lock()
        defer { lock.unlock() }
        guard next < count else { return nil }
        next += 1
        return next - 1
    }
}
