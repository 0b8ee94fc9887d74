import NNProtocol
import Testing

let samples = Message.examples

/// Frames as a socket delivers them: every frame as bytes.
func onTheWire(_ frames: [Frame]) -> [Frame] {
    frames.map { .bytes($0.wireBytes) }
}

@Suite struct CodecTests {
    @Test(arguments: samples)
    func roundTrip(message: Message) throws {
        #expect(try WireCodec.decode(WireCodec.encode(message)) == message)
        #expect(try WireCodec.decode(onTheWire(WireCodec.encode(message))) == message)
    }

    @Test func headerBytesAreAsDocumented() {
        #expect(WireCodec.encode(.heartbeat(Heartbeat(session: 0x0102_0304_0506_0708))) == [.bytes([0x4E, 0x4E, 5, 6, 8, 7, 6, 5, 4, 3, 2, 1])])
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
        #expect(throws: ProtocolError.self) { try WireCodec.decode([.bytes([0x4E, 0x4F, 3, 6, 0, 0, 0, 0, 0, 0, 0, 0])]) }
        #expect(throws: ProtocolError.self) { try WireCodec.decode([.bytes([0x4E, 0x4E, 3, 99])]) }
        #expect(throws: ProtocolError.self) { try WireCodec.decode([]) }
        // A task without its index and float frames, a heartbeat with extra frames, a float frame of 7 bytes, an index frame of 5.
        let task = onTheWire(WireCodec.encode(samples[3]))
        #expect(throws: ProtocolError.self) { try WireCodec.decode([task[0]]) }
        #expect(throws: ProtocolError.self) { try WireCodec.decode(WireCodec.encode(samples[5]) + [.bytes([1])]) }
        #expect(throws: ProtocolError.self) { try WireCodec.decode([task[0], task[1], .bytes([1, 2, 3, 4, 5, 6, 7]), task[3]]) }
        #expect(throws: ProtocolError.self) { try WireCodec.decode([task[0], .bytes([1, 2, 3, 4, 5]), task[2], task[3]]) }
        // A string length far beyond the frame, and one beyond the limit.
        #expect(throws: ProtocolError.self) { try WireCodec.decode([.bytes([0x4E, 0x4E, 3, 8, 0xFF, 0xFF, 0xFF, 0x7F, 65])]) }
        #expect(throws: ProtocolError.self) { try WireCodec.decode([.bytes([0x4E, 0x4E, 3, 8, 0, 0, 2, 0] + Array(repeating: 65, count: 1 << 17))]) }
        #expect(throws: ProtocolError.self) { try WireCodec.decode([.bytes([0x4E, 0x4E, 3, 8, 2, 0, 0, 0, 0xC3, 0x28])]) }
        // A train request claiming more clients than its header holds, and more than the limit.
        let train = onTheWire(WireCodec.encode(samples[10]))
        let fixed: [UInt8] = [0x4E, 0x4E, 3, 9] + Array(repeating: 0, count: 20)
        #expect(throws: ProtocolError.self) { try WireCodec.decode([.bytes(fixed + [0xFF, 0xFF, 0, 0]), train[1], train[2], train[3]]) }
        #expect(throws: ProtocolError.self) { try WireCodec.decode([.bytes(fixed + [0xFF, 0xFF, 0xFF, 0xFF]), train[1], train[2], train[3]]) }
        // Client orders that do not add up to the index frame.
        #expect(throws: ProtocolError.self) { try WireCodec.decode([train[0], .bytes(Array(repeating: 0, count: 4)), train[2], train[3]]) }
    }

    /// A ring task's plan must hold together: halving-doubling only among a power-of-two number of members, peers
    /// other members of the ring, each named once, fewer than the ring has.
    @Test func rejectsRingPlansThatDoNotHoldTogether() throws {
        func task(size: UInt32, position: UInt32 = 0, _ allReduce: AllReduce, peers: [UInt32]) -> Message {
            .task(GradientTask(step: 0, start: 0, firstRow: 0, samples: [1], parameters: [], state: [],
                               ring: RingPlan(generation: 1, position: position, size: size, firstStep: 0, totals: [8], allReduce: allReduce,
                                              peers: peers.map { RingPeer(position: $0, endpoint: "tcp://h:\($0)") })))
        }
        let good = task(size: 8, position: 5, .halvingDoubling, peers: [1, 7, 4])
        #expect(try WireCodec.decode(WireCodec.encode(good)) == good)
        for bad in [task(size: 6, .halvingDoubling, peers: [3, 5]), task(size: 4, .ring, peers: [1, 1]), task(size: 4, .ring, peers: [0, 1]),
                    task(size: 4, .ring, peers: [4]), task(size: 2, .ring, peers: [1, 0])] {
            #expect(throws: ProtocolError.self, "\(bad)") { try WireCodec.decode(WireCodec.encode(bad)) }
        }
        var unknown = WireCodec.encode(task(size: 2, .ring, peers: [1]))
        guard case .bytes(var header) = unknown[0] else { return }
        // The all-reduce byte comes before the peer count and the one peer (position, endpoint, empty key).
        let at = header.count - (4 + 4 + 4 + "tcp://h:1".utf8.count + 4) - 1
        #expect(header[at] == AllReduce.ring.rawValue)
        header[at] = 9
        unknown[0] = .bytes(header)
        #expect(throws: ProtocolError.self) { try WireCodec.decode(unknown) }
    }

    /// A refuse keeps its layout in every version: a peer of another version can read it, and the coordinator
    /// stamps it with that peer's version.
    @Test func refusalsAreReadableAcrossVersions() throws {
        let frames = WireCodec.refusal("speak version 4", peerVersion: 2)
        guard case .bytes(let header) = frames[0] else { Issue.record("not bytes"); return }
        #expect(header[2] == 2 && header[3] == 3)
        #expect(try WireCodec.decode(frames) == .refuse(Refuse(reason: "speak version 4")))
        // Any other type of another version is still refused.
        var hello = onTheWire(WireCodec.encode(samples[0]))
        guard case .bytes(var b) = hello[0] else { return }
        b[2] = 3
        hello[0] = .bytes(b)
        #expect(throws: ProtocolError.self) { try WireCodec.decode(hello) }
    }

    /// Index frames received as floats (a transport that hands every frame after the header over as floats)
    /// decode to the same indices.
    @Test func indexFramesDecodeFromFloatFrames() throws {
        let frames = WireCodec.encode(samples[3])
        let indices = frames[1].wireBytes.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        #expect(try WireCodec.decode([frames[0], .floats(indices), frames[2], frames[3]]) == samples[3])
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

@Suite struct BFloat16Tests {
    /// Round to nearest, ties to even; infinities and NaN survive; every value comes back as the nearest bfloat16.
    @Test func roundsToNearestEven() throws {
        let one: Float = 1, ulp: Float = 0x1p-7
        #expect(BFloat16.rounded([one + ulp / 2]) == [one])  // halfway, to the even 1
        #expect(BFloat16.rounded([one + 3 * ulp / 2]) == [one + 2 * ulp])  // halfway, to the even 1 + 2 ulp
        #expect(BFloat16.rounded([one + ulp / 2 + 0x1p-20]) == [one + ulp])  // past halfway
        #expect(BFloat16.rounded([.infinity, -.infinity, 0, -0.0]).map(\.bitPattern) == [Float.infinity, -.infinity, 0, -0.0].map(\.bitPattern))
        #expect(BFloat16.rounded([.nan])[0].isNaN)
        #expect(BFloat16.rounded([Float.greatestFiniteMagnitude]) == [.infinity])
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<10_000 {
            let x = Float(bitPattern: UInt32.random(in: 0..<0x7F00_0000, using: &rng)) * (Bool.random(using: &rng) ? 1 : -1)
            let r = BFloat16.rounded([x])[0]
            #expect(r.bitPattern & 0xFFFF == 0)
            let step = Float(bitPattern: (r.bitPattern & 0x7FFF_FFFF) + 0x10000) - abs(r)  // one bfloat16 ulp above |r|
            #expect(abs(Double(x) - Double(r)) <= Double(step) / 2, "\(x) → \(r)")
        }
        let values: [Float] = [0.5, -3, 0x1p-130, 65536]
        let bytes = BFloat16.encode(values)
        #expect(bytes.count == 8 && bytes.withUnsafeBytes { BFloat16.decode($0) } == values)
    }
}

