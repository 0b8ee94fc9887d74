import NNProtocol
import Testing

/// One message of every type, with awkward values.
let samples: [Message] = [
    .hello(Hello(session: 0xDEAD_BEEF_0123_4567, name: "wörker-1", dataFingerprint: Array(0..<32), inputWidth: 784, classes: 10)),
    .welcome(Welcome(workerIndex: 3, configuration: #"{"seed":1}"#)),
    .refuse(Refuse(reason: "protocol version 2 is not supported")),
    .task(Task(step: 1 << 40, epoch: 2, start: 128, count: 64, firstRow: 64, parameters: [1, -2.5, .leastNonzeroMagnitude], state: [])),
    .gradient(GradientResult(step: 7, start: 0, count: 32, correct: 30, lossSum: 3.25, computeNanoseconds: 123_456, gradient: [0.5, -0.25], state: [1, 2])),
    .heartbeat(Heartbeat(session: 42)),
    .error(ErrorReport(code: .notRegistered, text: "who are you?")),
    .shutdown(Shutdown(reason: "done")),
    .hello(Hello(session: 9, name: "host", dataFingerprint: [1, 2], inputWidth: 784, classes: 10, clientFirst: 50, clientCount: 25)),
    .welcome(Welcome(workerIndex: 1, configuration: "{}", clientFirst: 50, clientCount: 25)),
    .train(TrainRequest(round: 12, clients: [3, 17, 99], learningRate: 0.05, parameters: [0.25, -1], state: [])),
    .update(ClientUpdate(round: 12, client: 17, samples: 600, correct: 580, lossSum: 12.5, computeNanoseconds: 77, parameters: [0.5, -0.75], state: [2])),
]

/// Frames as a socket delivers them: every frame as bytes.
func onTheWire(_ frames: [Frame]) -> [Frame] {
    frames.map { frame in
        switch frame {
        case .bytes: return frame
        case .floats(let f): return .bytes(f.withUnsafeBytes { Array($0) })
        }
    }
}

@Suite struct CodecTests {
    @Test(arguments: samples)
    func roundTrip(message: Message) throws {
        #expect(try WireCodec.decode(WireCodec.encode(message)) == message)
        #expect(try WireCodec.decode(onTheWire(WireCodec.encode(message))) == message)
    }

    @Test func headerBytesAreAsDocumented() {
        #expect(WireCodec.encode(.heartbeat(Heartbeat(session: 0x0102_0304_0506_0708))) == [.bytes([0x4E, 0x4E, 2, 6, 8, 7, 6, 5, 4, 3, 2, 1])])
    }

    /// Every prefix of every header, and every header with a byte too many, is an error, not a crash.
    @Test(arguments: samples)
    func truncatedAndExtendedHeaders(message: Message) {
        var frames = onTheWire(WireCodec.encode(message))
        guard case .bytes(let header) = frames[0] else { return }
        for length in 0..<header.count {
            frames[0] = .bytes(Array(header.prefix(length)))
            #expect(throws: ProtocolError.self) { try WireCodec.decode(frames) }
        }
        frames[0] = .bytes(header + [0])
        #expect(throws: ProtocolError.self) { try WireCodec.decode(frames) }
    }

    @Test func rejectsWrongVersionMagicTypeAndFrames() throws {
        var header = onTheWire(WireCodec.encode(samples[0]))
        guard case .bytes(var b) = header[0] else { return }
        b[2] = 1
        header[0] = .bytes(b)
        do {
            _ = try WireCodec.decode(header)
            Issue.record("decoded a version-1 message")
        } catch let error as ProtocolError {
            #expect(error.peerVersion == 1)
            #expect(error.description.contains("version 1"))
        }
        #expect(throws: ProtocolError.self) { try WireCodec.decode([.bytes([0x4E, 0x4F, 2, 6, 0, 0, 0, 0, 0, 0, 0, 0])]) }
        #expect(throws: ProtocolError.self) { try WireCodec.decode([.bytes([0x4E, 0x4E, 2, 99])]) }
        #expect(throws: ProtocolError.self) { try WireCodec.decode([]) }
        // A task without its float frames, a heartbeat with extra frames, a float frame of 7 bytes.
        let task = onTheWire(WireCodec.encode(samples[3]))
        #expect(throws: ProtocolError.self) { try WireCodec.decode([task[0]]) }
        #expect(throws: ProtocolError.self) { try WireCodec.decode(WireCodec.encode(samples[5]) + [.bytes([1])]) }
        #expect(throws: ProtocolError.self) { try WireCodec.decode([task[0], .bytes([1, 2, 3, 4, 5, 6, 7]), task[2]]) }
        // A string length far beyond the frame, and one beyond the limit.
        #expect(throws: ProtocolError.self) { try WireCodec.decode([.bytes([0x4E, 0x4E, 2, 8, 0xFF, 0xFF, 0xFF, 0x7F, 65])]) }
        #expect(throws: ProtocolError.self) { try WireCodec.decode([.bytes([0x4E, 0x4E, 2, 8, 0, 0, 2, 0] + Array(repeating: 65, count: 1 << 17))]) }
        #expect(throws: ProtocolError.self) { try WireCodec.decode([.bytes([0x4E, 0x4E, 2, 8, 2, 0, 0, 0, 0xC3, 0x28])]) }
        // A train request claiming more client ids than its header holds, and more than the limit.
        let train = onTheWire(WireCodec.encode(samples[10]))
        #expect(throws: ProtocolError.self) {
            try WireCodec.decode([.bytes([0x4E, 0x4E, 2, 9] + Array(repeating: 0, count: 12) + [0xFF, 0xFF, 0, 0]), train[1], train[2]])
        }
        #expect(throws: ProtocolError.self) {
            try WireCodec.decode([.bytes([0x4E, 0x4E, 2, 9] + Array(repeating: 0, count: 12) + [0xFF, 0xFF, 0xFF, 0xFF]), train[1], train[2]])
        }
    }

    /// Thousands of random mutations of valid messages: each decodes or throws, never traps.
    @Test func randomMutationsNeverTrap() {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> UInt64 { state ^= state << 13; state ^= state >> 7; state ^= state << 17; return state }
        var decoded = 0, rejected = 0
        for i in 0..<20_000 {
            var frames = onTheWire(WireCodec.encode(samples[i % samples.count]))
            let f = Int(next() % UInt64(frames.count))
            guard case .bytes(var b) = frames[f] else { continue }
            switch next() % 4 {
            case 0 where !b.isEmpty: b[Int(next() % UInt64(b.count))] = UInt8(truncatingIfNeeded: next())
            case 1 where !b.isEmpty: b.removeLast(Int(next() % UInt64(b.count)))
            case 2: b += (0..<(next() % 9)).map { _ in UInt8(truncatingIfNeeded: next()) }
            default: b = (0..<(next() % 40)).map { _ in UInt8(truncatingIfNeeded: next()) }
            }
            frames[f] = .bytes(b)
            if (try? WireCodec.decode(frames)) != nil { decoded += 1 } else { rejected += 1 }
        }
        #expect(decoded + rejected == 20_000 && rejected > 1000)
    }
}
