import Foundation
import NNCore
import NNData

/// A federated experiment, complete: read from a JSON file (`docs/federated.md` lists the keys), sent to every
/// worker in the welcome, so coordinator, workers and `nn simulate` agree on everything. Unknown keys are errors:
/// a misspelt key must not silently leave a default in place.
public struct Experiment: Codable, Equatable, Sendable {
    public var name: String
    public var dataset: String = DatasetKind.mnist.rawValue
    public var model: ModelSpec
    public var partition: PartitionSpec
    /// K.
    public var clients: Int
    /// C: each round samples max(⌈C·K⌉, 1) clients.
    public var fraction: Double
    /// E.
    public var localEpochs: Int
    /// B; nil is B = ∞ (a client's whole partition in one batch), written "full".
    public var localBatch: Int?
    /// η of the clients' SGD in round 0, multiplied by `learningRateDecay` every round.
    public var learningRate: Float
    public var learningRateDecay: Float = 1
    public var rounds: Int
    public var targetAccuracy: Double?
    public var seed: UInt64 = 1
    public var strategy: StrategySpec = StrategySpec(kind: .fedavg)
    /// A round ends this many seconds after it starts at the latest; updates not in by then are left out.
    public var deadlineSeconds: Double = 60
    /// A round with fewer updates than this is skipped (the global model stays as it was).
    public var minimumResults: Int = 1
    /// The global model is evaluated on the test set after every this many rounds, and after the last.
    public var evaluateEvery: Int = 1
    /// Clients that send corrupted updates, for robustness experiments.
    public var adversaries: AdversarySpec?
    /// Client-level differential privacy (clipping, noise, accountant).
    public var privacy: PrivacySpec?
    /// How clients send their updates: in full (nil), as int8, or as their top-k entries.
    public var compression: CompressionSpec?
    /// Masks the updates so that the coordinator learns only their sum.
    public var secureAggregation: SecureAggregationSpec?
    /// Each worker averages its sampled clients' models and sends that one model, weighted by their samples, in
    /// place of one model per client: a host's upload no longer grows with its clients. Only for the rules that
    /// are a weighted mean, and it sums in another order, so a simulation matches it given the same hosts.
    public var hostAggregation = false

    public init(name: String, model: ModelSpec, partition: PartitionSpec, clients: Int, fraction: Double, localEpochs: Int,
                localBatch: Int?, learningRate: Float, rounds: Int, seed: UInt64 = 1, strategy: StrategySpec = StrategySpec(kind: .fedavg)) {
        self.name = name; self.model = model; self.partition = partition; self.clients = clients; self.fraction = fraction
        self.localEpochs = localEpochs; self.localBatch = localBatch; self.learningRate = learningRate; self.rounds = rounds
        self.seed = seed; self.strategy = strategy
    }

    /// Clients sampled per round.
    public var clientsPerRound: Int { max(Int((fraction * Double(clients)).rounded(.up)), 1) }

    /// The clients' learning rate in `round` (from 0).
    public func learningRate(round: Int) -> Float { learningRate * pow(learningRateDecay, Float(round)) }

    public var datasetKind: DatasetKind { DatasetKind(rawValue: dataset)! }

    public func validate() throws {
        func check(_ condition: Bool, _ text: String) throws { if !condition { throw ExperimentError(text) } }
        try check(DatasetKind(rawValue: dataset) != nil, "unknown dataset '\(dataset)'; known: \(DatasetKind.allCases.map(\.rawValue).joined(separator: ", "))")
        try model.validate()
        try check(!model.batchNorm && model.dropout == 0 && model.residualBlocks == 0, "federated models are plain MLPs: no batch norm, dropout or residual blocks")
        do { try partition.validate() } catch { throw ExperimentError("\(error)") }
        try check(clients >= 1, "clients must be at least 1")
        try check(fraction > 0 && fraction <= 1, "fraction must be in (0, 1]")
        try check(localEpochs >= 1, "localEpochs must be at least 1")
        try check(localBatch.map { $0 >= 1 } ?? true, "localBatch must be at least 1, or \"full\"")
        try check(learningRate > 0 && learningRate.isFinite, "learningRate must be positive")
        try check(learningRateDecay > 0 && learningRateDecay <= 1, "learningRateDecay must be in (0, 1]")
        try check(rounds >= 1, "rounds must be at least 1")
        try check(targetAccuracy.map { $0 > 0 && $0 <= 1 } ?? true, "targetAccuracy must be in (0, 1]")
        try check(deadlineSeconds > 0, "deadlineSeconds must be positive")
        try check(evaluateEvery >= 1, "evaluateEvery must be at least 1")
        try check(minimumResults >= 1 && minimumResults <= clientsPerRound,
                  "minimumResults must be between 1 and the \(clientsPerRound) clients sampled a round")
        try strategy.validate(clientsPerRound: clientsPerRound)
        try adversaries?.validate()
        try privacy?.validate(strategy: strategy, samplingRate: fraction, expectedClients: expectedClientsPerRound)
        try compression?.validate()
        try secureAggregation?.validate(self)
        if hostAggregation {
            let averaging = StrategySpec.Kind.allCases.filter { StrategySpec(kind: $0).isWeightedMean }.map(\.rawValue)
            try check(strategy.isWeightedMean, "hostAggregation needs a strategy that averages (\(averaging.joined(separator: ", "))), not \(strategy.kind.rawValue), which needs each client's model")
            try check(privacy == nil && secureAggregation == nil && compression == nil,
                      "hostAggregation cannot be combined with privacy, secureAggregation or compression, which work on each client's update")
        }
    }

    /// Clients a round is expected to have: exactly `clientsPerRound`, or C·K on average with Poisson sampling.
    public var expectedClientsPerRound: Double {
        privacy?.sampling == .poisson ? fraction * Double(clients) : Double(clientsPerRound)
    }

    /// Reads and validates an experiment file.
    public static func load(_ path: String) throws -> Experiment {
        let bytes: [UInt8]
        do { bytes = try AtomicFile.read(path) } catch { throw ExperimentError("cannot read experiment \(path): \(error)") }
        return try decode(Data(bytes), source: path)
    }

    public static func decode(_ data: Data, source: String) throws -> Experiment {
        let experiment: Experiment
        do {
            experiment = try JSONDecoder().decode(Experiment.self, from: data)
        } catch let error as ExperimentError {
            throw ExperimentError("\(source): \(error)")
        } catch DecodingError.keyNotFound(let key, let context) {
            throw ExperimentError("\(source): missing key '\(path(context.codingPath + [key]))'")
        } catch DecodingError.dataCorrupted(let context) where context.codingPath.isEmpty {
            // Foundation says "not valid JSON" also for valid JSON with a number its field cannot hold.
            if let (key, value) = outOfRange(data) {
                throw ExperimentError("\(source): '\(key)' is \(value), which that key cannot hold (out of range, negative or not whole)")
            }
            throw ExperimentError("\(source): not a valid experiment: \(context.debugDescription)")
        } catch DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context), DecodingError.dataCorrupted(let context) {
            let at = context.codingPath.isEmpty ? "" : " at '\(path(context.codingPath))'"
            throw ExperimentError("\(source): not a valid experiment\(at): \(context.debugDescription)")
        }
        do { try experiment.validate() } catch { throw ExperimentError("\(source): \(error)") }
        return experiment
    }

    private static func path(_ keys: [CodingKey]) -> String { keys.map(\.stringValue).joined(separator: ".") }

    /// In a JSON object that parses but does not decode as a whole, the number (by key path) that, replaced by 0,
    /// lets the decoding past it: the value its field cannot hold.
    private static func outOfRange(_ data: Data) -> (key: String, value: Any)? {
        guard let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return nil }
        func corrupt(_ object: [String: Any]) -> Bool {
            guard let bytes = try? JSONSerialization.data(withJSONObject: object) else { return false }
            do { _ = try JSONDecoder().decode(Experiment.self, from: bytes) } catch DecodingError.dataCorrupted(let c) where c.codingPath.isEmpty {
                return true
            } catch {}
            return false
        }
        for key in root.keys.sorted() {
            if let nested = root[key] as? [String: Any] {
                for inner in nested.keys.sorted() where nested[inner] is NSNumber {
                    var copy = root, part = nested
                    part[inner] = 0
                    copy[key] = part
                    if !corrupt(copy) { return ("\(key).\(inner)", nested[inner]!) }
                }
            } else if root[key] is NSNumber {
                var copy = root
                copy[key] = 0
                if !corrupt(copy) { return (key, root[key]!) }
            }
        }
        return nil
    }

    // MARK: Coding

    /// The file's keys, the one list of them: decoding, encoding and the unknown-key check all use it.
    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, dataset, model, activation, initializer, partition, clients, fraction, localEpochs, localBatch, learningRate,
             learningRateDecay, rounds, targetAccuracy, seed, strategy, deadlineSeconds, minimumResults, evaluateEvery, adversaries,
             privacy, compression, secureAggregation, hostAggregation
    }

    public init(from decoder: Decoder) throws {
        try StrictKeys.check(decoder, CodingKeys.self, in: "the experiment")
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        dataset = try c.decodeIfPresent(String.self, forKey: .dataset) ?? dataset
        do {
            model = try ModelSpec(widths: try ModelSpec.widths(parsing: try c.decode(String.self, forKey: .model)),
                                  activation: try c.decodeIfPresent(Activation.Kind.self, forKey: .activation) ?? .relu,
                                  initializer: try c.decodeIfPresent(Initializer.self, forKey: .initializer))
        } catch let error as ModelSpecError {
            throw ExperimentError("\(error)")
        }
        try StrictKeys.check(try c.superDecoder(forKey: .partition), PartitionSpec.CodingKeys.self, in: "partition")
        partition = try c.decode(PartitionSpec.self, forKey: .partition)
        clients = try c.decode(Int.self, forKey: .clients)
        fraction = try c.decode(Double.self, forKey: .fraction)
        localEpochs = try c.decode(Int.self, forKey: .localEpochs)
        if (try? c.decode(String.self, forKey: .localBatch)) == "full" {
            localBatch = nil
        } else {
            guard let size = try? c.decode(Int.self, forKey: .localBatch) else {
                throw ExperimentError("localBatch must be a positive integer or \"full\"")
            }
            localBatch = size
        }
        learningRate = try c.decode(Float.self, forKey: .learningRate)
        learningRateDecay = try c.decodeIfPresent(Float.self, forKey: .learningRateDecay) ?? learningRateDecay
        rounds = try c.decode(Int.self, forKey: .rounds)
        targetAccuracy = try c.decodeIfPresent(Double.self, forKey: .targetAccuracy)
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? seed
        if c.contains(.strategy) {
            try StrictKeys.check(try c.superDecoder(forKey: .strategy), StrategySpec.CodingKeys.self, in: "strategy")
            strategy = try c.decode(StrategySpec.self, forKey: .strategy)
        }
        deadlineSeconds = try c.decodeIfPresent(Double.self, forKey: .deadlineSeconds) ?? deadlineSeconds
        minimumResults = try c.decodeIfPresent(Int.self, forKey: .minimumResults) ?? minimumResults
        evaluateEvery = try c.decodeIfPresent(Int.self, forKey: .evaluateEvery) ?? evaluateEvery
        if c.contains(.adversaries) {
            try StrictKeys.check(try c.superDecoder(forKey: .adversaries), AdversarySpec.CodingKeys.self, in: "adversaries")
            adversaries = try c.decode(AdversarySpec.self, forKey: .adversaries)
        }
        if c.contains(.privacy) {
            try StrictKeys.check(try c.superDecoder(forKey: .privacy), PrivacySpec.CodingKeys.self, in: "privacy")
            privacy = try c.decode(PrivacySpec.self, forKey: .privacy)
        }
        if c.contains(.compression) {
            try StrictKeys.check(try c.superDecoder(forKey: .compression), CompressionSpec.CodingKeys.self, in: "compression")
            compression = try c.decode(CompressionSpec.self, forKey: .compression)
        }
        if c.contains(.secureAggregation) {
            try StrictKeys.check(try c.superDecoder(forKey: .secureAggregation), SecureAggregationSpec.CodingKeys.self, in: "secureAggregation")
            secureAggregation = try c.decode(SecureAggregationSpec.self, forKey: .secureAggregation)
        }
        hostAggregation = try c.decodeIfPresent(Bool.self, forKey: .hostAggregation) ?? hostAggregation
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(dataset, forKey: .dataset)
        try c.encode(model.widths.map(String.init).joined(separator: "-"), forKey: .model)
        try c.encode(model.activation, forKey: .activation)
        try c.encodeIfPresent(model.initializer, forKey: .initializer)
        try c.encode(partition, forKey: .partition)
        try c.encode(clients, forKey: .clients)
        try c.encode(fraction, forKey: .fraction)
        try c.encode(localEpochs, forKey: .localEpochs)
        if let localBatch { try c.encode(localBatch, forKey: .localBatch) } else { try c.encode("full", forKey: .localBatch) }
        try c.encode(learningRate, forKey: .learningRate)
        try c.encode(learningRateDecay, forKey: .learningRateDecay)
        try c.encode(rounds, forKey: .rounds)
        try c.encodeIfPresent(targetAccuracy, forKey: .targetAccuracy)
        try c.encode(seed, forKey: .seed)
        try c.encode(strategy, forKey: .strategy)
        try c.encode(deadlineSeconds, forKey: .deadlineSeconds)
        try c.encode(minimumResults, forKey: .minimumResults)
        try c.encode(evaluateEvery, forKey: .evaluateEvery)
        try c.encodeIfPresent(adversaries, forKey: .adversaries)
        try c.encodeIfPresent(privacy, forKey: .privacy)
        try c.encodeIfPresent(compression, forKey: .compression)
        try c.encodeIfPresent(secureAggregation, forKey: .secureAggregation)
        if hostAggregation { try c.encode(hostAggregation, forKey: .hostAggregation) }
    }
}

public struct ExperimentError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
