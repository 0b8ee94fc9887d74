import NNCore

/// One ZeroMQ frame's content: bytes, or a float vector kept as floats so it can be sent without copying.
public enum Frame: Sendable, Equatable {
    case bytes([UInt8])
    case floats([Float])

    public var byteCount: Int {
        switch self {
        case .bytes(let b): return b.count
        case .floats(let f): return f.count * 4
        }
    }

    /// The frame's content as it travels: float frames as their little-endian bytes.
    public var wireBytes: [UInt8] {
        switch self {
        case .bytes(let b): return b
        case .floats(let f): return f.withUnsafeBytes { Array($0) }
        }
    }
}

public struct ProtocolError: Error, CustomStringConvertible, Equatable {
    public let description: String
    /// Set when the only problem is the peer's protocol version, so the peer can be told which one to speak.
    public let peerVersion: UInt8?
    init(_ description: String, peerVersion: UInt8? = nil) { self.description = description; self.peerVersion = peerVersion }
}

#if _endian(big)
#error("the wire format is little-endian and float frames are sent as they lie in memory")
#endif

/// Messages to frames and back. Frame 0 is a header: the bytes "NN", the protocol version, the message type,
/// then the type's fields, little-endian. Tasks and train requests add an index frame (u32 sample indices) and
/// two float32 frames (parameters, state); gradients and client updates add two float32 frames (gradient or
/// parameters, then state); compressed updates add the encoding's frames, then state; ring tasks add an index
/// frame and the replica's bytes (often empty); ring gradients a byte frame (a replica, often empty); ring chunks
/// one float32 frame. Decoding checks every length against the frame it reads from and rejects anything left over.
/// `docs/protocol.md` is the specification.
public enum WireCodec {
    public static let version: UInt8 = 5
    static let magic: [UInt8] = [0x4E, 0x4E]
    /// Longest string field (names, reasons, error texts); the configuration JSON may take `maximumConfiguration`.
    public static let maximumText = 64 << 10
    public static let maximumConfiguration = 1 << 20
    /// Most peers one ring task may name (a member of a ring exchanges with 2, with halving-doubling with log₂ n).
    public static let maximumRingPeers = 64
    /// Most steps one ring task may hold.
    public static let maximumRingSteps = 1 << 16
    /// Most clients one train request may name.
    public static let maximumClients = 1 << 20
    /// Most int8 segments (parameter tensors) of a compressed update.
    public static let maximumSegments = 4096
    /// Most clients a round of secure aggregation may have: share numbers are bytes 1…255.
    public static let maximumRoster = 255
    /// Largest secure-aggregation message: one worker's sealed shares when it hosts a whole roster.
    public static let maximumMaskingBytes = 16 + maximumRoster * (maximumRoster - 1) * (8 + SealedShares.bytes)
    /// Longest header a worker may send (a hello with the longest name and fingerprint); a message from a worker
    /// is at most this plus its float frames.
    public static let maximumWorkerHeader = 4 + 8 + 4 + maximumText + 4 + 64 + 5 * 4

    public static func encode(_ message: Message) -> [Frame] {
        var w = Writer()
        w.bytes(magic)
        w.u8(version)
        w.u8(message.type.rawValue)
        switch message {
        case .hello(let m):
            w.u64(m.session); w.text(m.name); w.u32(UInt32(m.dataFingerprint.count)); w.bytes(m.dataFingerprint)
            w.u32(m.inputWidth); w.u32(m.classes); w.u32(m.clientFirst); w.u32(m.clientCount); w.u32(m.capabilities.rawValue)
        case .welcome(let m):
            w.u32(m.workerIndex); w.text(m.configuration); w.u32(m.clientFirst); w.u32(m.clientCount)
        case .refuse(let m):
            w.text(m.reason)
        case .task(let m) where m.ring != nil:
            let ring = m.ring!
            w.u64(m.step); w.u32(m.start); w.u32(m.firstRow)
            w.u64(ring.generation); w.u32(ring.position); w.u32(ring.size); w.u64(ring.firstStep); w.u32(UInt32(ring.totals.count))
            for total in ring.totals { w.u32(total) }
            w.u8(ring.allReduce.rawValue); w.u32(UInt32(ring.peers.count))
            for peer in ring.peers { w.u32(peer.position); w.text(peer.endpoint); w.text(peer.key) }
            return [.bytes(w.buffer), .bytes(indexBytes(m.samples)), .bytes(ring.sync)]
        case .task(let m):
            w.u64(m.step); w.u32(m.start); w.u32(m.firstRow)
            return [.bytes(w.buffer), .bytes(indexBytes(m.samples)), vector(m.parameters, compact: m.compact), .floats(m.state)]
        case .gradient(let m):
            w.u64(m.step); w.u32(m.start); w.u32(m.count); w.u32(m.correct); w.u64(m.lossSum.bitPattern); w.u64(m.computeNanoseconds)
            if let generation = m.generation {
                w.u64(generation)
                return [.bytes(w.buffer), .bytes(m.replica)]
            }
            return [.bytes(w.buffer), vector(m.gradient, compact: m.compact), .floats(m.state)]
        case .heartbeat(let m):
            w.u64(m.session)
        case .error(let m):
            w.u16(m.code.rawValue); w.text(m.text)
        case .shutdown(let m):
            w.text(m.reason)
        case .train(let m):
            w.u64(m.round); w.u32(m.learningRate.bitPattern); w.u32(m.localEpochs); w.u32(m.localBatch); w.u32(m.proximalMu.bitPattern)
            w.u32(UInt32(m.clients.count))
            for c in m.clients { w.u32(c.client); w.u32(UInt32(c.order.count)) }
            return [.bytes(w.buffer), .bytes(indexBytes(m.clients.flatMap(\.order))), .floats(m.parameters), .floats(m.state)]
        case .update(let m):
            w.u64(m.round); w.u32(m.client); w.u32(m.samples); w.u32(m.correct); w.u64(m.lossSum.bitPattern); w.u64(m.computeNanoseconds)
            if let masked = m.masked { return [.bytes(w.buffer), .bytes(indexBytes(masked))] }
            switch m.compressed {
            case nil:
                return [.bytes(w.buffer), .floats(m.parameters), .floats(m.state)]
            case let .int8(scales, lengths, values)?:
                w.u8(1); w.u32(UInt32(scales.count))
                for (scale, length) in zip(scales, lengths) { w.u32(scale.bitPattern); w.u32(length) }
                return [.bytes(w.buffer), .bytes(values.map { UInt8(bitPattern: $0) }), .floats(m.state)]
            case let .sparse(count, indices, values)?:
                w.u8(2); w.u32(count)
                return [.bytes(w.buffer), .bytes(indexBytes(indices)), .floats(values), .floats(m.state)]
            }
        case .maskingKeys(let m):
            w.u64(m.round); keys(m.keys, into: &w)
        case .maskingRoster(let m):
            w.u64(m.round); w.u32(m.threshold); w.u8(m.fractionBits); w.u32(m.weightUnit); w.u32(m.clip.bitPattern); keys(m.keys, into: &w)
        case .maskingShares(let m):
            w.u64(m.round); w.u32(UInt32(m.shares.count))
            for s in m.shares { w.u32(s.from); w.u32(s.to); w.bytes(s.sealed) }
        case .unmask(let m):
            w.u64(m.round); w.u32(UInt32(m.survivors.count))
            for c in m.survivors { w.u32(c) }
        case .reveal(let m):
            w.u64(m.round); w.u32(UInt32(m.shares.count))
            for s in m.shares { w.u32(s.holder); w.u32(s.owner); w.u8(s.secret.rawValue); w.bytes(s.share) }
        case .ringChunk(let m):
            w.u64(m.generation); w.u64(m.step); w.u32(m.phase)
            return [.bytes(w.buffer), .floats(m.values)]
        case .ringEndpoint(let m):
            w.text(m.endpoint)
        }
        return [.bytes(w.buffer)]
    }

    /// A parameter or gradient vector's frame: float32, or bfloat16 bytes when `compact`.
    private static func vector(_ values: [Float], compact: Bool) -> Frame { compact ? .bytes(BFloat16.encode(values)) : .floats(values) }

    private static func keys(_ keys: [ClientKeys], into w: inout Writer) {
        w.u32(UInt32(keys.count))
        for k in keys { w.u32(k.client); w.bytes(k.encryption); w.bytes(k.masking); w.bytes(k.commitment) }
    }

    /// A refuse in the layout every version shares, stamped with the peer's `version` so that it reads it.
    public static func refusal(_ reason: String, peerVersion: UInt8) -> [Frame] {
        guard case .bytes(var header) = encode(.refuse(Refuse(reason: reason)))[0] else { preconditionFailure() }
        header[2] = peerVersion
        return [.bytes(header)]
    }

    public static func decode(_ frames: [Frame]) throws -> Message {
        guard let first = frames.first else { throw ProtocolError("empty message") }
        guard case .bytes(let header) = first else { throw ProtocolError("frame 0 must be bytes") }
        guard header.count >= 4 else { throw ProtocolError("frame 0 has \(header.count) bytes, fewer than the 4-byte header") }
        guard Array(header[0..<2]) == magic else {
            throw ProtocolError("frame 0 does not start with \"NN\" (0x\(header[0..<2].hexString)): not an nn message")
        }
        // A refuse has the same layout in every version, so a peer of any version can read why it was refused.
        guard header[2] == version || (header[3] == MessageType.refuse.rawValue && frames.count == 1) else {
            throw ProtocolError("protocol version \(header[2]) is not supported (this side speaks version \(version))", peerVersion: header[2])
        }
        guard let type = MessageType(rawValue: header[3]) else { throw ProtocolError("unknown message type \(header[3])") }
        let expectedFrames = switch type {
        case .task, .compactTask, .train: 4
        case .gradient, .compactGradient, .update, .ringTask: 3
        case .maskedUpdate, .ringGradient, .ringChunk: 2
        case .compressedUpdate: frames.count == 4 ? 4 : 3  // the encoding, read below, says which
        default: 1
        }
        guard frames.count == expectedFrames else {
            throw ProtocolError("\(type) message has \(frames.count) frames, expected \(expectedFrames)")
        }
        var r = Reader(bytes: header, offset: 4, type: type)
        let message: Message
        switch type {
        case .hello:
            let session = try r.u64(), name = try r.text(limit: maximumText)
            let length = Int(try r.u32())
            guard length <= 64 else { throw ProtocolError("hello: fingerprint of \(length) bytes (at most 64)") }
            message = .hello(Hello(session: session, name: name, dataFingerprint: try r.bytes(length), inputWidth: try r.u32(), classes: try r.u32(),
                                   clientFirst: try r.u32(), clientCount: try r.u32(), capabilities: Capabilities(rawValue: try r.u32())))
        case .welcome:
            message = .welcome(Welcome(workerIndex: try r.u32(), configuration: try r.text(limit: maximumConfiguration),
                                       clientFirst: try r.u32(), clientCount: try r.u32()))
        case .refuse:
            message = .refuse(Refuse(reason: try r.text(limit: maximumText)))
        case .task, .compactTask:
            let compact = type == .compactTask
            message = .task(GradientTask(step: try r.u64(), start: try r.u32(), firstRow: try r.u32(), samples: try indices(frames[1]),
                                         parameters: try vector(frames[2], "parameters", compact: compact), state: try floats(frames[3], "state"),
                                         compact: compact))
        case .ringTask:
            let step = try r.u64(), start = try r.u32(), firstRow = try r.u32()
            let generation = try r.u64(), position = try r.u32(), size = try r.u32(), firstStep = try r.u64(), steps = Int(try r.u32())
            guard steps >= 1, steps <= maximumRingSteps else { throw ProtocolError("ringTask: \(steps) steps (1 to \(maximumRingSteps))") }
            let totals = try (0..<steps).map { _ in try r.u32() }
            guard firstStep <= UInt64.max - UInt64(steps) else { throw ProtocolError("ringTask: \(steps) steps from step \(firstStep)") }
            guard size >= 1, position < size else { throw ProtocolError("ringTask: position \(position) in a ring of \(size)") }
            let code = try r.u8()
            guard let allReduce = AllReduce(rawValue: code) else { throw ProtocolError("ringTask: all-reduce \(code) is unknown") }
            guard allReduce != .halvingDoubling || size & (size - 1) == 0 else { throw ProtocolError("ringTask: halving-doubling among \(size) members, not a power of two") }
            let count = Int(try r.u32())
            guard count <= maximumRingPeers, count < size else { throw ProtocolError("ringTask: \(count) peers in a ring of \(size) (at most \(maximumRingPeers))") }
            let peers = try (0..<count).map { _ in RingPeer(position: try r.u32(), endpoint: try r.text(limit: maximumText), key: try r.text(limit: 40)) }
            guard peers.allSatisfy({ $0.position < size && $0.position != position }), Set(peers.map(\.position)).count == count else {
                throw ProtocolError("ringTask: peers at positions \(peers.map(\.position)), for position \(position) in a ring of \(size)")
            }
            guard peers.allSatisfy({ $0.key.isEmpty || $0.key.utf8.count == 40 }) else {
                throw ProtocolError("ringTask: a key that is neither empty nor 40 Z85 characters")
            }
            let plan = RingPlan(generation: generation, position: position, size: size, firstStep: firstStep, totals: totals, allReduce: allReduce,
                                peers: peers, sync: frames[2].wireBytes)
            message = .task(GradientTask(step: step, start: start, firstRow: firstRow, samples: try indices(frames[1]), parameters: [], state: [],
                                         ring: plan))
        case .ringGradient:
            message = .gradient(GradientResult(step: try r.u64(), start: try r.u32(), count: try r.u32(), correct: try r.u32(),
                                               lossSum: Double(bitPattern: try r.u64()), computeNanoseconds: try r.u64(),
                                               gradient: [], state: [], generation: try r.u64(), replica: frames[1].wireBytes))
        case .ringChunk:
            message = .ringChunk(RingChunk(generation: try r.u64(), step: try r.u64(), phase: try r.u32(), values: try floats(frames[1], "chunk")))
        case .ringEndpoint:
            message = .ringEndpoint(RingEndpoint(endpoint: try r.text(limit: maximumText)))
        case .gradient, .compactGradient:
            let compact = type == .compactGradient
            message = .gradient(GradientResult(step: try r.u64(), start: try r.u32(), count: try r.u32(), correct: try r.u32(),
                                               lossSum: Double(bitPattern: try r.u64()), computeNanoseconds: try r.u64(),
                                               gradient: try vector(frames[1], "gradient", compact: compact), state: try floats(frames[2], "state"),
                                               compact: compact))
        case .heartbeat:
            message = .heartbeat(Heartbeat(session: try r.u64()))
        case .error:
            let raw = try r.u16()
            guard let code = ErrorReport.Code(rawValue: raw) else { throw ProtocolError("error: unknown code \(raw)") }
            message = .error(ErrorReport(code: code, text: try r.text(limit: maximumText)))
        case .shutdown:
            message = .shutdown(Shutdown(reason: try r.text(limit: maximumText)))
        case .train:
            let round = try r.u64(), rate = Float(bitPattern: try r.u32()), epochs = try r.u32(), batch = try r.u32()
            let mu = Float(bitPattern: try r.u32()), count = Int(try r.u32())
            guard count <= maximumClients else { throw ProtocolError("train: \(count) clients (at most \(maximumClients))") }
            guard count * 8 <= header.count - r.offset else {
                throw ProtocolError("train: \(count) clients do not fit the \(header.count - r.offset) bytes left")
            }
            let lengths = try (0..<count).map { _ in (client: try r.u32(), length: Int(try r.u32())) }
            let all = try indices(frames[1])
            guard lengths.reduce(0, { $0 + $1.length }) == all.count else {
                throw ProtocolError("train: the clients' orders add up to \(lengths.reduce(0) { $0 + $1.length }) indices, the index frame has \(all.count)")
            }
            var offset = 0
            let clients = lengths.map { entry in
                defer { offset += entry.length }
                return ClientWork(client: entry.client, order: Array(all[offset..<(offset + entry.length)]))
            }
            message = .train(TrainRequest(round: round, learningRate: rate, localEpochs: epochs, localBatch: batch, proximalMu: mu, clients: clients,
                                          parameters: try floats(frames[2], "parameters"), state: try floats(frames[3], "state")))
        case .update:
            message = .update(ClientUpdate(round: try r.u64(), client: try r.u32(), samples: try r.u32(), correct: try r.u32(),
                                           lossSum: Double(bitPattern: try r.u64()), computeNanoseconds: try r.u64(),
                                           parameters: try floats(frames[1], "parameters"), state: try floats(frames[2], "state")))
        case .compressedUpdate:
            var u = ClientUpdate(round: try r.u64(), client: try r.u32(), samples: try r.u32(), correct: try r.u32(),
                                 lossSum: Double(bitPattern: try r.u64()), computeNanoseconds: try r.u64(), parameters: [], state: [])
            switch try r.u8() {
            case 1:
                guard frames.count == 3 else { throw ProtocolError("compressedUpdate: an int8 encoding has 3 frames, not \(frames.count)") }
                let segments = Int(try r.u32())
                guard segments >= 1, segments <= maximumSegments, segments * 8 <= header.count - r.offset else {
                    throw ProtocolError("compressedUpdate: \(segments) segments (1…\(maximumSegments), 8 bytes each, in the header)")
                }
                let table = try (0..<segments).map { _ in (scale: Float(bitPattern: try r.u32()), length: try r.u32()) }
                guard case .bytes(let raw) = frames[1] else { throw ProtocolError("compressedUpdate: the int8 values must be a byte frame") }
                guard table.reduce(0, { $0 + Int($1.length) }) == raw.count else {
                    throw ProtocolError("compressedUpdate: segment lengths add up to \(table.reduce(0) { $0 + Int($1.length) }), the value frame has \(raw.count) bytes")
                }
                guard table.allSatisfy({ $0.scale.isFinite && $0.scale >= 0 }), !raw.contains(0x80) else {
                    throw ProtocolError("compressedUpdate: int8 scales must be finite and non-negative, values in −127…127")
                }
                u.compressed = .int8(scales: table.map(\.scale), lengths: table.map(\.length), values: raw.map { Int8(bitPattern: $0) })
                u.state = try floats(frames[2], "state")
            case 2:
                guard frames.count == 4 else { throw ProtocolError("compressedUpdate: a sparse encoding has 4 frames, not \(frames.count)") }
                let count = try r.u32()
                let indices = try self.indices(frames[1]), values = try floats(frames[2], "values")
                guard indices.count == values.count else {
                    throw ProtocolError("compressedUpdate: \(indices.count) indices and \(values.count) values")
                }
                guard zip(indices, indices.dropFirst()).allSatisfy({ $0 < $1 }), (indices.last ?? 0) < count || indices.isEmpty else {
                    throw ProtocolError("compressedUpdate: sparse indices must increase and stay below \(count)")
                }
                u.compressed = .sparse(count: count, indices: indices, values: values)
                u.state = try floats(frames[3], "state")
            case let other:
                throw ProtocolError("compressedUpdate: unknown encoding \(other)")
            }
            message = .update(u)
        case .maskedUpdate:
            message = .update(ClientUpdate(round: try r.u64(), client: try r.u32(), samples: try r.u32(), correct: try r.u32(),
                                           lossSum: Double(bitPattern: try r.u64()), computeNanoseconds: try r.u64(),
                                           parameters: [], state: [], masked: try indices(frames[1])))
        case .maskingKeys:
            message = .maskingKeys(MaskingKeys(round: try r.u64(), keys: try r.keys()))
        case .maskingRoster:
            message = .maskingRoster(MaskingRoster(round: try r.u64(), threshold: try r.u32(), fractionBits: try r.u8(),
                                                   weightUnit: try r.u32(), clip: Float(bitPattern: try r.u32()), keys: try r.keys()))
        case .maskingShares:
            let round = try r.u64()
            let count = try r.count(each: 8 + SealedShares.bytes, atMost: maximumRoster * (maximumRoster - 1))
            message = .maskingShares(MaskingShares(round: round, shares: try (0..<count).map { _ in
                SealedShares(from: try r.u32(), to: try r.u32(), sealed: try r.bytes(SealedShares.bytes))
            }))
        case .unmask:
            let round = try r.u64()
            let count = try r.count(each: 4, atMost: maximumRoster)
            message = .unmask(Unmask(round: round, survivors: try (0..<count).map { _ in try r.u32() }))
        case .reveal:
            let round = try r.u64()
            let count = try r.count(each: 9 + RevealedShare.bytes, atMost: maximumRoster * maximumRoster)
            message = .reveal(Reveal(round: round, shares: try (0..<count).map { _ in
                let holder = try r.u32(), owner = try r.u32(), raw = try r.u8()
                guard let secret = RevealedShare.Secret(rawValue: raw) else { throw ProtocolError("reveal: unknown secret kind \(raw)") }
                return RevealedShare(holder: holder, owner: owner, secret: secret, share: try r.bytes(RevealedShare.bytes))
            }))
        }
        guard r.offset == header.count else {
            throw ProtocolError("\(type): \(header.count - r.offset) unexpected bytes after the fields")
        }
        return message
    }

    static func floats(_ frame: Frame, _ what: String) throws -> [Float] {
        switch frame {
        case .floats(let f):
            return f
        case .bytes(let b):
            guard b.count % 4 == 0 else { throw ProtocolError("\(what) frame has \(b.count) bytes, not a whole number of float32") }
            var f = [Float](repeating: 0, count: b.count / 4)
            f.withUnsafeMutableBytes { out in b.withUnsafeBytes { out.copyMemory(from: $0) } }
            return f
        }
    }

    /// A parameter or gradient frame: float32, or bfloat16 when `compact`.
    static func vector(_ frame: Frame, _ what: String, compact: Bool) throws -> [Float] {
        switch (compact, frame) {
        case (false, _):
            return try floats(frame, what)
        case (true, .floats(let f)):
            return f.withUnsafeBytes { BFloat16.decode($0) }
        case (true, .bytes(let b)):
            guard b.count % 2 == 0 else { throw ProtocolError("\(what) frame has \(b.count) bytes, not a whole number of bfloat16") }
            return b.withUnsafeBytes { BFloat16.decode($0) }
        }
    }

    static func indices(_ frame: Frame) throws -> [UInt32] {
        switch frame {
        case .floats(let f):
            // A transport that receives every frame after the header as floats hands the indices over so: same bytes.
            return f.map(\.bitPattern)
        case .bytes(let b):
            guard b.count % 4 == 0 else { throw ProtocolError("index frame has \(b.count) bytes, not a whole number of u32") }
            var out = [UInt32](repeating: 0, count: b.count / 4)
            out.withUnsafeMutableBytes { o in b.withUnsafeBytes { o.copyMemory(from: $0) } }
            return out
        }
    }

    static func indexBytes(_ values: [UInt32]) -> [UInt8] { values.withUnsafeBytes { Array($0) } }

    struct Writer {
        var buffer: [UInt8] = []
        mutating func bytes(_ b: [UInt8]) { buffer += b }
        mutating func u8(_ v: UInt8) { buffer.append(v) }
        mutating func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { buffer += $0 } }
        mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { buffer += $0 } }
        mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { buffer += $0 } }
        mutating func text(_ s: String) { let b = Array(s.utf8); u32(UInt32(b.count)); buffer += b }
    }

    struct Reader {
        let bytes: [UInt8]
        var offset: Int
        let type: MessageType

        mutating func bytes(_ n: Int) throws -> [UInt8] {
            guard n >= 0, bytes.count - offset >= n else {
                throw ProtocolError("\(type): header ends at byte \(bytes.count), a field needs bytes \(offset)..<\(offset + n)")
            }
            defer { offset += n }
            return Array(bytes[offset..<(offset + n)])
        }
        mutating func integer<T: FixedWidthInteger>(_: T.Type) throws -> T {
            let b = try bytes(MemoryLayout<T>.size)
            return b.reversed().reduce(T(0)) { $0 << 8 | T($1) }
        }
        mutating func u8() throws -> UInt8 { try integer(UInt8.self) }
        mutating func u16() throws -> UInt16 { try integer(UInt16.self) }
        mutating func u32() throws -> UInt32 { try integer(UInt32.self) }
        mutating func u64() throws -> UInt64 { try integer(UInt64.self) }
        /// A u32 count of entries of `each` bytes, checked against `atMost` and against the bytes left.
        mutating func count(each: Int, atMost: Int) throws -> Int {
            let n = Int(try u32())
            guard n <= atMost, n * each <= bytes.count - offset else {
                throw ProtocolError("\(type): \(n) entries of \(each) bytes (at most \(atMost), and \(bytes.count - offset) bytes left)")
            }
            return n
        }
        mutating func keys() throws -> [ClientKeys] {
            let n = try count(each: 4 + 3 * ClientKeys.keyBytes, atMost: WireCodec.maximumRoster)
            return try (0..<n).map { _ in
                ClientKeys(client: try u32(), encryption: try bytes(ClientKeys.keyBytes), masking: try bytes(ClientKeys.keyBytes),
                           commitment: try bytes(ClientKeys.keyBytes))
            }
        }
        mutating func text(limit: Int) throws -> String {
            let n = Int(try u32())
            guard n <= limit else { throw ProtocolError("\(type): string of \(n) bytes exceeds the \(limit)-byte limit") }
            let b = try bytes(n)
            guard let s = String(validating: b, as: UTF8.self) else { throw ProtocolError("\(type): string is not valid UTF-8") }
            return s
        }
    }
}
