extension Message {
    /// One message of every type, with awkward values (non-ASCII names, subnormal floats, empty state): the
    /// codec tests' cases and, through `FuzzInput.seeds`, the fuzzer's starting corpus, so both follow the codec.
    public static let examples: [Message] = [
        .hello(Hello(session: 0xDEAD_BEEF_0123_4567, name: "wörker-1", dataFingerprint: Array(0..<32), inputWidth: 784, classes: 10)),
        .welcome(Welcome(workerIndex: 3, configuration: #"{"seed":1}"#)),
        .refuse(Refuse(reason: "protocol version 2 is not supported")),
        .task(GradientTask(step: 1 << 40, start: 128, firstRow: 64, samples: [5, 59_999, 0], parameters: [1, -2.5, .leastNonzeroMagnitude], state: [])),
        .gradient(GradientResult(step: 7, start: 0, count: 32, correct: 30, lossSum: 3.25, computeNanoseconds: 123_456, gradient: [0.5, -0.25], state: [1, 2])),
        .heartbeat(Heartbeat(session: 42)),
        .error(ErrorReport(code: .notRegistered, text: "who are you?")),
        .shutdown(Shutdown(reason: "done")),
        .hello(Hello(session: 9, name: "host", dataFingerprint: [1, 2], inputWidth: 784, classes: 10, clientFirst: 50, clientCount: 25,
                     capabilities: [.dropout])),
        .welcome(Welcome(workerIndex: 1, configuration: "{}", clientFirst: 50, clientCount: 25)),
        .train(TrainRequest(round: 12, learningRate: 0.05, localEpochs: 2, localBatch: 10, proximalMu: 0.01,
                            clients: [ClientWork(client: 3, order: [7, 8, 8, 7]), ClientWork(client: 17, order: []), ClientWork(client: 99, order: [1, 2])],
                            parameters: [0.25, -1], state: [])),
        .update(ClientUpdate(round: 12, client: 17, samples: 600, correct: 580, lossSum: 12.5, computeNanoseconds: 77, parameters: [0.5, -0.75], state: [2])),
        .update(ClientUpdate(round: 3, client: 4, samples: 60, correct: 50, lossSum: 2, computeNanoseconds: 5, parameters: [], state: [],
                             compressed: .int8(scales: [0.5, 0.001], lengths: [3, 1], values: [127, -127, 0, 9]))),
        .update(ClientUpdate(round: 3, client: 5, samples: 60, correct: 50, lossSum: 2, computeNanoseconds: 5, parameters: [], state: [1],
                             compressed: .sparse(count: 10, indices: [0, 4, 9], values: [0.25, -3, .leastNonzeroMagnitude]))),
        .update(ClientUpdate(round: 4, client: 6, samples: 600, correct: 1, lossSum: 0.5, computeNanoseconds: 9, parameters: [], state: [],
                             masked: [0, .max, 12345])),
        .maskingKeys(MaskingKeys(round: 4, keys: [ClientKeys(client: 6, encryption: Array(0..<32), masking: Array(32..<64), commitment: Array(128..<160))])),
        .maskingRoster(MaskingRoster(round: 4, threshold: 2, fractionBits: 27, weightUnit: 600, clip: 0,
                                     keys: [ClientKeys(client: 6, encryption: Array(0..<32), masking: Array(32..<64), commitment: Array(128..<160)),
                                            ClientKeys(client: 9, encryption: Array(64..<96), masking: Array(96..<128), commitment: Array(160..<192))])),
        .maskingShares(MaskingShares(round: 4, shares: [SealedShares(from: 6, to: 9, sealed: (0..<SealedShares.bytes).map { UInt8($0 % 256) })])),
        .unmask(Unmask(round: 4, survivors: [6, 9])),
        .reveal(Reveal(round: 4, shares: [RevealedShare(holder: 9, owner: 6, secret: .maskingKey, share: Array(repeating: 7, count: 32))])),
    ]
}
