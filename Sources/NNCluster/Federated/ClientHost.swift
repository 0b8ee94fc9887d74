import Foundation
import NNCore
import NNData
import NNProtocol

/// Hosts a range of an experiment's federated clients and runs the local training each round asks of them,
/// on the sample orders the request carries. A worker process holds one; `nn simulate` holds one with every
/// client. Clients of one request train in parallel on `threads` threads, each with its own network; a
/// client's result depends only on the request, never on the thread. (Sendable because after `init` only the
/// per-thread contexts change, each touched by one thread at a time.)
public final class ClientHost: @unchecked Sendable {
    public let experiment: Experiment
    public let clients: Range<Int>
    private let data: Dataset
    private let adversaries: Set<Int>
    private let contexts: [Context]
    private let compressor: UpdateCompressor?

    /// One thread's network, its backpropagation and local SGD, and buffers.
    final class Context {
        let backpropagation: Backpropagation
        let sgd: Optimizer
        var buffer: BatchBuffer
        let global: FloatBuffer
        var network: Network { backpropagation.network }
        init(experiment: Experiment) {
            let network = Network(spec: experiment.model)
            backpropagation = Backpropagation(network: network, seed: experiment.seed)
            sgd = Optimizer(OptimizerSettings(kind: .sgd), parameterCount: network.parameterCount)
            buffer = BatchBuffer(capacity: 0, inputWidth: experiment.model.inputWidth)
            global = FloatBuffer(count: network.parameterCount)
        }

        /// The batch buffer, grown to hold `rows`.
        func batch(_ rows: Int) -> BatchBuffer {
            if buffer.capacity < rows { buffer = BatchBuffer(capacity: rows, inputWidth: network.spec.inputWidth) }
            return buffer
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
        adversaries = experiment.adversaries?.members(clients: experiment.clients, seed: experiment.seed) ?? []
        let contexts = (0..<max(threads, 1)).map { _ in Context(experiment: experiment) }
        self.contexts = contexts
        compressor = experiment.compression.map {
            UpdateCompressor(spec: $0, seed: experiment.seed, layout: contexts[0].network.parameterLayout, clients: clients.count)
        }
    }

    /// Trains every client the request names and returns their updates in the request's order, or with
    /// `hostAggregation` their mean as one update. `onProgress`
    /// is called on the calling thread every few local steps (a worker heartbeats there during long rounds).
    /// Once `stop` is set no further client starts, and the request is abandoned with an error.
    public func train(_ request: TrainRequest, stop: StopRequest? = nil, onProgress: () -> Void = {}) throws -> [ClientUpdate] {
        try validate(request)
        let started = ContinuousClock.now
        var results = [ClientUpdate?](repeating: nil, count: request.clients.count)
        let queue = JobQueue(count: request.clients.count)
        let caller = pthread_self()
        withoutActuallyEscaping(onProgress) { onProgress in
            nonisolated(unsafe) let progress = onProgress
            results.withUnsafeMutableBufferPointer { slots in
                nonisolated(unsafe) let slots = slots
                DispatchQueue.concurrentPerform(iterations: min(contexts.count, request.clients.count)) { t in
                    let onCaller = pthread_equal(pthread_self(), caller) != 0
                    while stop?.reason == nil, let j = queue.take() {
                        slots[j] = trainClient(request.clients[j], request: request, context: contexts[t], progress: onCaller ? progress : nil)
                    }
                }
            }
        }
        if let reason = stop?.reason, results.contains(where: { $0 == nil }) { throw ClusterError("abandoned the round's training: \(reason)") }
        let updates = results.map { $0! }
        guard experiment.hostAggregation, !updates.isEmpty else { return updates }
        return [updates.hostAggregate(computeNanoseconds: UInt64(started.duration(to: .now).seconds * 1e9))]
    }

    private func validate(_ request: TrainRequest) throws {
        let network = contexts[0].network
        guard request.parameters.count == network.parameterCount, request.state.count == network.state.count else {
            throw ClusterError("train request carries \(request.parameters.count) parameters and \(request.state.count) state values; the model has \(network.parameterCount) and \(network.state.count)")
        }
        guard request.learningRate > 0, request.learningRate.isFinite else {
            throw ClusterError("train request has learning rate \(request.learningRate)")
        }
        guard request.proximalMu >= 0, request.proximalMu.isFinite else { throw ClusterError("train request has μ = \(request.proximalMu)") }
        guard request.localEpochs >= 1 else { throw ClusterError("train request asks for \(request.localEpochs) local epochs") }
        if let stray = request.clients.first(where: { !clients.contains(Int($0.client)) }) {
            throw ClusterError("client \(stray.client) is not hosted here (this worker hosts \(clients.lowerBound)..<\(clients.upperBound))")
        }
        guard Set(request.clients.map(\.client)).count == request.clients.count else { throw ClusterError("train request names a client twice") }
        for work in request.clients {
            guard !work.order.isEmpty, work.order.count % Int(request.localEpochs) == 0 else {
                throw ClusterError("client \(work.client): an order of \(work.order.count) indices is not \(request.localEpochs) epochs of a non-empty partition")
            }
            if let bad = work.order.first(where: { Int($0) >= data.sampleCount }) {
                throw ClusterError("client \(work.client): sample \(bad) is outside the \(data.sampleCount) training samples")
            }
        }
    }

    /// E local epochs of minibatch SGD over the client's orders from the global weights, batches of
    /// min(B, partition) (the last one of an epoch smaller); with FedProx each step adds μ(w − w_global) to the gradient.
    private func trainClient(_ work: ClientWork, request: TrainRequest, context: Context, progress: (() -> Void)?) -> ClientUpdate {
        let started = ContinuousClock.now
        let network = context.network
        let parameters = network.parameters, count = network.parameterCount
        network.load(parameters: request.parameters, state: request.state)
        let mu = request.proximalMu
        if mu > 0 { context.global.base.update(from: parameters.base, count: count) }
        let size = work.partitionSize(localEpochs: request.localEpochs)
        let batch = request.localBatch == 0 ? size : min(Int(request.localBatch), size)
        let buffer = context.batch(batch)
        let order = work.order.map { Int($0) }
        var lossSum = 0.0, correct = 0, step: UInt64 = 0
        for epoch in 0..<Int(request.localEpochs) {
            lossSum = 0; correct = 0
            for start in stride(from: epoch * size, to: (epoch + 1) * size, by: batch) {
                let indices = order[start..<min(start + batch, (epoch + 1) * size)]
                data.gather(indices, into: buffer.x.base, labels: buffer.labels)
                // Plain SGD takes its step in the backward pass; FedProx's term needs the gradient first.
                let r = context.backpropagation.run(x: buffer.x.base, labels: buffer.labels, batch: indices.count, step: step,
                                                    descent: mu > 0 ? nil : request.learningRate)
                lossSum += r.loss * Double(indices.count)
                correct += r.correct
                if mu > 0 {
                    let g = network.gradients.base, w = parameters.base, w0 = context.global.base
                    for i in 0..<count { g[i] += mu * (w[i] - w0[i]) }
                    context.sgd.step(parameters: parameters, gradients: network.gradients, learningRate: request.learningRate)
                }
                step += 1
                if step % 16 == 0 { progress?() }
            }
        }
        let client = Int(work.client)
        if adversaries.contains(client), let adversary = experiment.adversaries {
            corrupt(parameters, global: request.parameters, adversary, client: client, round: request.round)
        }
        let compressed = compressor?.encode(trained: parameters.base, global: request.parameters, client: client,
                                            slot: client - clients.lowerBound, round: request.round)
        return ClientUpdate(round: request.round, client: work.client, samples: UInt32(size), correct: UInt32(correct),
                            lossSum: lossSum, computeNanoseconds: UInt64(started.duration(to: .now).seconds * 1e9),
                            parameters: compressed == nil ? parameters.array : [], state: network.state.array, compressed: compressed)
    }

    /// An adversarial client's update: w_global + scale·(w − w_global), or Gaussian noise.
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
        Evaluation.split(networks: contexts.map(\.network), parameters: parameters, state: state, on: test)
    }
}

extension Evaluation {
    /// The evaluation of `parameters` on `test`, its samples split into one contiguous part per network, the parts
    /// evaluated in parallel. Accuracy and confusion matrix are those of one network evaluating every sample.
    static func split(networks: [Network], parameters: [Float], state: [Float], on test: Dataset) -> Evaluation {
        let parts = networks.count
        var evaluations = [Evaluation?](repeating: nil, count: parts)
        let chunk = (test.sampleCount + parts - 1) / parts
        evaluations.withUnsafeMutableBufferPointer { slots in
            nonisolated(unsafe) let slots = slots
            nonisolated(unsafe) let networks = networks
            DispatchQueue.concurrentPerform(iterations: parts) { t in
                networks[t].load(parameters: parameters, state: state)
                let range = (t * chunk)..<min((t + 1) * chunk, test.sampleCount)
                slots[t] = range.isEmpty ? nil : networks[t].evaluate(test, range: range)
            }
        }
        return Evaluation.merging(evaluations.compactMap { $0 })
    }
}
